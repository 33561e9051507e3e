// One watched source as the page runs it: OpenSession over gRPC-Web (browsers cannot send on
// a stream), prompts through UpdateSession by the session's id, and, as `samstream client`
// does, a reconnect with backoff after any end but a refusal, with the prompts replayed.
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  EventKind,
  type FrameResult,
  type Segmenter,
  type StreamEvent,
  type StreamStartSchema,
  type UpdateSessionResponse,
} from "./gen/samstream/v1/samstream_pb";
import type { PromptBook, PromptUpdateInit } from "./prompts";

export type StreamStartInit = MessageInitShape<typeof StreamStartSchema>;

export interface SessionView {
  result(result: FrameResult): void;
  event(event: StreamEvent): void;
  /** "connecting", "live", "reconnecting", "stopped" or "refused", with what to show. */
  state(state: string, detail: string): void;
}

/** Codes after which reconnecting cannot help until the user changes something. */
const REFUSED = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.InvalidArgument, Code.NotFound]);

export class LiveSession {
  sessionId = "";
  private readonly abort = new AbortController();

  constructor(
    private readonly client: Client<typeof Segmenter>,
    private readonly start: StreamStartInit,
    private readonly headers: () => Record<string, string>,
    private readonly book: PromptBook,
    private readonly view: SessionView,
  ) {}

  /** Runs until `stop()` or a refusal. */
  async run(): Promise<void> {
    let delay = 250;
    while (!this.abort.signal.aborted) {
      this.view.state("connecting", "opening the session");
      try {
        for await (const response of this.client.openSession(this.start, { signal: this.abort.signal, headers: this.headers() })) {
          if (response.msg.case === "result") {
            delay = 250;
            this.view.result(response.msg.value);
          } else if (response.msg.case === "event") {
            this.onEvent(response.msg.value);
          }
        }
        this.view.state("reconnecting", "the stream ended");
      } catch (error) {
        if (this.abort.signal.aborted) break;
        const e = ConnectError.from(error);
        if (REFUSED.has(e.code)) {
          this.view.state("refused", `${Code[e.code].toUpperCase()}: ${e.rawMessage}`);
          return;
        }
        this.view.state("reconnecting", `${Code[e.code]}: ${e.rawMessage}`);
      }
      this.sessionId = "";
      await sleep(delay, this.abort.signal);
      delay = Math.min(delay * 2, 4000);
    }
    this.view.state("stopped", "stopped");
  }

  stop(): void {
    this.abort.abort();
  }

  /** Sends `update` to the running session; rejects when there is none or it was refused. */
  async update(update: PromptUpdateInit): Promise<UpdateSessionResponse> {
    if (!this.sessionId) throw new ConnectError("no session yet: the update is replayed once it starts", Code.Unavailable);
    return this.client.updateSession({ sessionId: this.sessionId, prompts: update }, { headers: this.headers(), signal: this.abort.signal });
  }

  private onEvent(event: StreamEvent): void {
    if (event.kind === EventKind.STARTED) {
      this.sessionId = event.sessionId;
      this.view.state("live", event.message);
      const replay = this.book.replay();
      if (replay) void this.update(replay).catch((e) => this.view.state("live", `replaying prompts failed: ${ConnectError.from(e).rawMessage}`));
    }
    this.view.event(event);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
