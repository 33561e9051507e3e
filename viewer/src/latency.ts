// The latency panel's numbers: each stage's p50/p99 over the recent results (from the server's
// Timing), results per second, total latency over the last minute, and the click-to-mask time
// this page measures itself (from the click until the first result that reflects it is drawn).
import type { Timing } from "./gen/samstream/v1/samstream_pb";

export const STAGES = ["capture", "preprocess", "upload", "queue", "encoder", "decoder", "postprocess", "download", "preview", "total"] as const;
type Stage = (typeof STAGES)[number];
const KEEP = 300;

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function stageMs(timing: Timing, stage: Stage): number {
  const us: Record<Stage, bigint> = {
    capture: timing.captureUs, preprocess: timing.preprocessUs, upload: timing.uploadUs, queue: timing.queueUs,
    encoder: timing.encoderUs, decoder: timing.decoderUs, postprocess: timing.postprocessUs,
    download: timing.downloadUs, preview: timing.previewUs, total: timing.totalUs,
  };
  return Number(us[stage]) / 1000;
}

export class Latency {
  readonly stages = new Map<Stage, number[]>(STAGES.map((s) => [s, []]));
  /** (arrival time, total ms) of the last minute's results. */
  readonly totals: [number, number][] = [];
  readonly clickToMask: number[] = [];
  /** The server's part of each click-to-mask time. */
  readonly clickServer: number[] = [];
  /** The decoder's part of the server's. */
  readonly clickDecoder: number[] = [];
  /** Results of new frames so far (prompt updates' re-decodes aside). */
  frames = 0;
  /** Clicks waiting for their masks, and (with `resolve`) callers of `whenShown`. */
  private pending: { revision: bigint; at: number; resolve?: () => void }[] = [];
  /** The revision of the last result drawn. */
  private drawnRevision = -1n;

  /** `redecode`: a prompt update's result on a frame already shown (decoder only), which
   * counts for neither the stages nor the results per second of new frames. */
  result(timing: Timing | undefined, redecode: boolean, now = performance.now()): void {
    if (!redecode) this.frames++;
    if (timing && !redecode) {
      for (const stage of STAGES) push(this.stages.get(stage)!, stageMs(timing, stage));
      this.totals.push([now, stageMs(timing, "total")]);
    }
    while (this.totals.length > 0 && now - this.totals[0][0] > 60_000) this.totals.shift();
  }

  /** A result at `revision` is on the screen: the clicks it answers took this long, of which
   * the server took `timing`'s total (from receiving the update to sending the result). */
  shown(revision: bigint, timing: Timing | undefined, now = performance.now()): void {
    this.drawnRevision = revision;
    for (const click of this.pending.filter((c) => revision >= c.revision)) {
      if (click.resolve) {
        click.resolve();
        continue;
      }
      push(this.clickToMask, now - click.at);
      push(this.clickServer, timing ? stageMs(timing, "total") : NaN);
      push(this.clickDecoder, timing ? stageMs(timing, "decoder") : NaN);
    }
    this.pending = this.pending.filter((c) => revision < c.revision);
  }

  /** Resolves once a result at `revision` or later is drawn (at once if one already was). */
  whenShown(revision: bigint): Promise<void> {
    if (this.drawnRevision >= revision) return Promise.resolve();
    return new Promise((resolve) => this.pending.push({ revision, at: performance.now(), resolve }));
  }

  /** The server refused the update at `revision`: its click is not waiting for a mask. */
  refused(revision: bigint): void {
    this.pending = this.pending.filter((c) => c.resolve || c.revision !== revision);
  }

  clicked(revision: bigint, at = performance.now()): void {
    this.pending.push({ revision, at });
  }

  /** Results per second over the last five seconds. */
  rate(now = performance.now()): number {
    const recent = this.totals.filter(([t]) => now - t <= 5000);
    if (recent.length < 2) return 0;
    return (recent.length - 1) / ((recent[recent.length - 1][0] - recent[0][0]) / 1000 || 1);
  }
}

function push(values: number[], value: number): void {
  values.push(value);
  if (values.length > KEEP) values.shift();
}

/** Total latency over the last minute as a line, the newest on the right. */
export function drawChart(canvas: HTMLCanvasElement, totals: [number, number][], now = performance.now()): void {
  const ctx = canvas.getContext("2d")!;
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  if (totals.length === 0) return;
  const top = Math.max(10, ...totals.map(([, ms]) => ms)) * 1.1;
  ctx.strokeStyle = "#4fa3ff";
  ctx.beginPath();
  totals.forEach(([t, ms], i) => {
    const x = width - ((now - t) / 60_000) * width;
    const y = height - (ms / top) * (height - 12);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#9aa3ad";
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(`total, last minute (max ${top.toFixed(0)} ms)`, 4, 10);
}
