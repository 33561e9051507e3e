// The viewer page: pick a source, watch its frames with every object's mask, click to prompt,
// read the latency. Everything goes over gRPC-Web to the server that serves this page.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { EventKind, type FrameResult, MaskFormat, Segmenter, type StreamEvent, SourceStatus } from "./gen/samstream/v1/samstream_pb";
import { Latency, STAGES, drawChart, percentile } from "./latency";
import { colourOf, cssColour, drawOverlay, drawables } from "./masks";
import { PromptBook, type PromptUpdateInit } from "./prompts";
import { LiveSession, type SessionView, type StreamStartInit } from "./session";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const frameCanvas = $<HTMLCanvasElement>("frame");
const overlay = $<HTMLCanvasElement>("overlay");

const client = createClient(Segmenter, createGrpcWebTransport({ baseUrl: location.origin }));
const book = new PromptBook();
const latency = new Latency();
/** Multimask: the candidate shown per object. */
const chosen = new Map<number, number>();
const events: string[] = [];
const MAX_EVENTS = 50;
let session: LiveSession | null = null;
let lastResult: FrameResult | null = null;
let framesDrawn = 0;
/** The id of the last result's frame and of the frame on the canvas, -1 until a session's
 * first (a new session counts its frames from 1 again). */
let lastFrameId = -1n;
let frameShown = -1n;
let drawing = 0;
let status = { text: "not connected", kind: "" };

function headers(sourceKey?: string): Record<string, string> {
  const out: Record<string, string> = {};
  const token = $<HTMLInputElement>("token").value.trim();
  if (token) out.authorization = `Bearer ${token}`;
  // A consistent-hash proxy sends every viewer of a source to the replica that encodes it.
  if (sourceKey) out["x-samstream-source"] = sourceKey;
  return out;
}

function setStatus(text: string, kind: "" | "warn" | "error" = ""): void {
  status = { text, kind };
  const element = $("status");
  element.textContent = text;
  element.className = `status ${kind}`;
}

function showError(error: unknown): void {
  const e = ConnectError.from(error);
  if (e.code === Code.Unauthenticated) setStatus(`UNAUTHENTICATED: this server needs a bearer token (${e.rawMessage})`, "error");
  else setStatus(`${Code[e.code]}: ${e.rawMessage}`, "error");
}

/** A URI as the server keys it: without credentials. */
function withoutUserinfo(uri: string): string {
  const scheme = uri.indexOf("://");
  if (scheme < 0) return uri;
  const rest = uri.slice(scheme + 3);
  const end = rest.search(/[/?#]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  const at = authority.lastIndexOf("@");
  return at < 0 ? uri : uri.slice(0, scheme + 3) + rest.slice(at + 1);
}

async function loadModel(): Promise<void> {
  try {
    const info = await client.getModelInfo({}, { headers: headers() });
    $("model").textContent = `${info.name} · ${info.executionProvider} · ${info.precision} · ${info.provenance}`;
    const warning = $("model-warning");
    warning.hidden = info.meaningfulMasks;
    warning.textContent = "Random weights: the masks mean nothing (the official checkpoint was not available when the model was exported).";
  } catch (error) {
    showError(error);
  }
}

/** `quiet`: the periodic refresh, which leaves the status line to the session. */
async function loadSources(quiet = false): Promise<void> {
  try {
    const { sources } = await client.listSources({}, { headers: headers() });
    const select = $<HTMLSelectElement>("source");
    const keep = select.value;
    select.replaceChildren(...sources.map((s) => {
      const option = document.createElement("option");
      option.value = s.name;
      const size = s.width ? ` ${s.width}x${s.height}` : "";
      option.textContent = `${s.name} (${SourceStatus[s.status].toLowerCase()}${size})`;
      return option;
    }));
    if (sources.some((s) => s.name === keep)) select.value = keep;
    if (status.kind === "error" && !session) setStatus(sources.length ? "pick a source and press Watch" : "the server has no sources; enter an allowed URI");
  } catch (error) {
    if (!quiet) showError(error);
  }
}

const view: SessionView = {
  result(result) {
    latency.result(result.timing, result.frameId === lastFrameId);
    lastFrameId = result.frameId;
    lastResult = result;
    void draw(result);
  },
  event(event: StreamEvent) {
    if (event.kind === EventKind.STARTED) lastFrameId = frameShown = -1n;
    listEvent(`${EventKind[event.kind]}: ${event.message}`);
    if ([EventKind.SOURCE_LOST, EventKind.SOURCE_RECONNECTING, EventKind.SOURCE_MOVED, EventKind.REJECTED].includes(event.kind)) {
      setStatus(`${EventKind[event.kind]}: ${event.message}`, "warn");
    } else if (event.kind === EventKind.SOURCE_CONNECTED) {
      setStatus(`live: ${event.message}`);
    }
  },
  state(state, detail) {
    const kind = state === "refused" ? "error" : state === "reconnecting" ? "warn" : "";
    setStatus(state === "live" ? `live: ${detail}` : `${state}: ${detail}`, kind);
  },
};

/** Event lines not in the list yet. A PROMPTS_APPLIED event arrives while the server decodes
 * the update it announces: laying the list out at once would take CPU from that decoder when
 * the browser runs on the server's machine, so lines go in with the next result drawn (or
 * after EVENT_DELAY_MS when none comes). */
let unlisted: string[] = [];
let listTimer: number | undefined;
const EVENT_DELAY_MS = 250;

function listEvent(line: string): void {
  events.unshift(line);
  events.length = Math.min(events.length, MAX_EVENTS);
  unlisted.push(line);
  listTimer ??= window.setTimeout(flushEvents, EVENT_DELAY_MS);
}

/** The waiting lines, newest first, added to the list; the oldest beyond MAX_EVENTS dropped. */
function flushEvents(): void {
  window.clearTimeout(listTimer);
  listTimer = undefined;
  if (unlisted.length === 0) return;
  const list = $("events");
  list.prepend(...unlisted.reverse().map((line) => Object.assign(document.createElement("li"), { textContent: line })));
  unlisted = [];
  while (list.childElementCount > MAX_EVENTS) list.lastElementChild!.remove();
}

/** Draws a result's frame (its preview) and its masks together; a newer result wins. A prompt
 * update's result is on the frame already shown: its preview is not decoded again. */
async function draw(result: FrameResult): Promise<void> {
  const ticket = ++drawing;
  const newFrame = result.frameId !== frameShown;
  const bitmap = result.preview && newFrame ? await createImageBitmap(new Blob([result.preview.jpeg as BlobPart], { type: "image/jpeg" })) : null;
  if (ticket !== drawing) return;
  if (bitmap) {
    frameShown = result.frameId;
    if (frameCanvas.width !== result.width || frameCanvas.height !== result.height) {
      frameCanvas.width = result.width;
      frameCanvas.height = result.height;
    }
    frameCanvas.getContext("2d")!.drawImage(bitmap, 0, 0, result.width, result.height);
    framesDrawn++;
  }
  const resized = overlay.width !== result.width || overlay.height !== result.height;
  drawOverlay(overlay, result.width, result.height, drawables(result, chosen));
  // The points are in frame pixels: they move only when the frame's size does.
  if (resized) drawPrompts();
  latency.shown(result.promptRevision, result.timing);
  flushEvents();
  const age = result.timestampUs > 0n ? `${Math.max(0, Date.now() - Number(result.timestampUs) / 1000).toFixed(0)} ms` : "n/a";
  $("frame-info").textContent = `frame ${result.frameId} · age ${age} · dropped ${result.framesDropped} · revision ${result.promptRevision} · ${result.objects.length} objects`;
  renderObjects();
  renderLatency();
}

/** The clicked points on top of the masks, green positive and red negative, in the frame's
 * pixels. */
function drawPrompts(): void {
  const svg = document.getElementById("prompts")!;
  svg.setAttribute("viewBox", `0 0 ${overlay.width} ${overlay.height}`);
  const radius = String(Math.max(3, overlay.width / 200));
  svg.replaceChildren(...[...book.objects.values()].flatMap((object) => object.points.map((p) => {
    const circle = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    circle.setAttribute("cx", String(p.x));
    circle.setAttribute("cy", String(p.y));
    circle.setAttribute("r", radius);
    circle.setAttribute("fill", p.positive ? "#3ddc84" : "#ff5252");
    return circle;
  })));
}

function renderObjects(): void {
  const list = $("objects");
  list.replaceChildren(...[...book.objects.values()].map((object) => {
    const item = document.createElement("li");
    const found = lastResult?.objects.find((o) => o.objectId === object.id);
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.background = cssColour(colourOf(object.id));
    const detail = found ? `area ${found.area} · IoU ${found.score.toFixed(2)}` : "waiting for a mask";
    item.append(swatch, `#${object.id} · ${object.points.length} points${object.box ? " + box" : ""} · ${detail}`);
    item.className = object.id === book.selected ? "selected" : "";
    item.dataset.objectId = String(object.id);
    item.onclick = () => { book.selected = object.id; renderObjects(); };
    return item;
  }));
  const candidates = $("candidates");
  const selected = lastResult?.objects.find((o) => o.objectId === book.selected);
  candidates.hidden = !selected || selected.candidates.length === 0;
  if (selected && selected.candidates.length) {
    candidates.replaceChildren(...selected.candidates.map((c, k) => {
      const button = Object.assign(document.createElement("button"), { type: "button", textContent: `${k + 1}: IoU ${c.score.toFixed(2)}` });
      button.className = (chosen.get(selected.objectId) ?? 0) === k ? "chosen" : "";
      button.onclick = () => { chosen.set(selected.objectId, k); if (lastResult) void draw(lastResult); };
      return button;
    }));
  }
}

let latencyShown = 0;
function renderLatency(): void {
  const now = performance.now();
  if (now - latencyShown < 250) return;
  latencyShown = now;
  $("stages").querySelector("tbody")!.replaceChildren(...STAGES.map((stage) => {
    const values = latency.stages.get(stage)!;
    const row = document.createElement("tr");
    row.dataset.stage = stage;
    for (const text of [stage, percentile(values, 50).toFixed(1), percentile(values, 99).toFixed(1)]) {
      row.append(Object.assign(document.createElement("td"), { textContent: text }));
    }
    return row;
  }));
  const clicks = latency.clickToMask;
  const server = percentile(latency.clickServer, 50);
  const click = clicks.length
    ? `click-to-mask p50 ${percentile(clicks, 50).toFixed(0)} ms (server ${server.toFixed(0)} ms), p99 ${percentile(clicks, 99).toFixed(0)} ms (${clicks.length})`
    : "click-to-mask: click on the frame";
  $("rates").textContent = `${latency.rate(now).toFixed(1)} results/s · ${click}`;
  drawChart($<HTMLCanvasElement>("chart"), latency.totals, now);
}

function watch(): void {
  session?.stop();
  const uri = $<HTMLInputElement>("uri").value.trim();
  const name = $<HTMLSelectElement>("source").value;
  if (!uri && !name) return setStatus("pick a source or enter a URI", "warn");
  const start: StreamStartInit = {
    source: uri ? { case: "uri", value: uri } : { case: "sourceName", value: name },
    maskOptions: { format: MaskFormat.COCO_RLE, multimaskOutput: $<HTMLInputElement>("multimask").checked },
    track: $<HTMLInputElement>("track").checked,
    preview: { maxSide: 1280, quality: 80 },
    autoMode: $<HTMLInputElement>("auto").checked ? { everyNFrames: 3, options: { pointsPerSide: 16 } } : undefined,
  };
  const key = uri ? withoutUserinfo(uri) : name;
  const running = new LiveSession(client, start, () => headers(key), book, view);
  session = running;
  void running.run();
}

/** Makes a change to the prompts (`change` edits the book and says the update) and sends it. */
function send(change: () => PromptUpdateInit | null): void {
  const before = book.save();
  const update = change();
  if (!update) return;
  const revision = update.revision as bigint;
  // Clicks and drags are timed until their masks are drawn; removing objects is not.
  if (update.upsert?.length) latency.clicked(revision);
  // Sent before anything is drawn. Without a session the update waits for the next one's replay.
  session?.update(update).catch((error) => {
    if (!session?.sessionId) return;
    showError(error);
    // Refused (a point over the server's limit, say): the page forgets it too, or every later
    // update and the replay after a reconnect would carry it and be refused as well.
    if (ConnectError.from(error).code !== Code.InvalidArgument) return;
    // No mask will answer it: a later result must not count as this click's.
    latency.refused(revision);
    if (book.undo(before, revision)) showPrompts();
  });
  // Only the points change now: the masks change with the result.
  showPrompts();
}

/** The objects' list and their points, as the page's prompts are now. */
function showPrompts(): void {
  renderObjects();
  drawPrompts();
}

/** Frame pixels under a mouse event on the overlay. */
function framePoint(event: MouseEvent): { x: number; y: number } {
  const rect = overlay.getBoundingClientRect();
  return { x: ((event.clientX - rect.left) / rect.width) * overlay.width, y: ((event.clientY - rect.top) / rect.height) * overlay.height };
}

let pressed: { x: number; y: number; shift: boolean } | null = null;
overlay.addEventListener("mousedown", (event) => { pressed = { ...framePoint(event), shift: event.shiftKey }; });
overlay.addEventListener("mouseup", (event) => {
  if (!pressed) return;
  const end = framePoint(event);
  const start = pressed;
  pressed = null;
  const dragged = Math.hypot(end.x - start.x, end.y - start.y) > Math.max(6, overlay.width / 100);
  if (dragged) {
    send(() => book.setBox({ x0: Math.min(start.x, end.x), y0: Math.min(start.y, end.y), x1: Math.max(start.x, end.x), y1: Math.max(start.y, end.y) }));
  } else {
    send(() => book.addPoint(end.x, end.y, !(start.shift || event.shiftKey)));
  }
});

$("connect").onclick = watch;
$("disconnect").onclick = () => { session?.stop(); session = null; };
$("refresh").onclick = () => { void loadModel(); void loadSources(); };
$("token").onchange = () => { void loadModel(); void loadSources(); };
$("new-object").onclick = () => { book.newObject(); renderObjects(); };
$("delete-object").onclick = () => send(() => book.removeSelected());
$("clear").onclick = () => { chosen.clear(); send(() => book.clear()); };
for (const id of ["track", "multimask", "auto"]) $(id).onchange = () => { if (session) watch(); };

/** What the page shows, for tests and for debugging from the console. */
(window as unknown as { samstreamViewer: object }).samstreamViewer = {
  /** Resolves once a result at `revision` or later is drawn: a test waits without polling. */
  whenShown: (revision: number) => latency.whenShown(BigInt(revision)),
  snapshot: () => ({
    status: status.text,
    statusKind: status.kind,
    sessionId: session?.sessionId ?? "",
    framesDrawn,
    frameId: Number(lastResult?.frameId ?? 0n),
    revision: Number(lastResult?.promptRevision ?? 0n),
    width: lastResult?.width ?? 0,
    height: lastResult?.height ?? 0,
    objects: (lastResult?.objects ?? []).map((o) => ({ id: o.objectId, area: Number(o.area), score: o.score, bbox: o.bbox, candidates: o.candidates.length })),
    autoMasks: lastResult?.autoMasks.length ?? 0,
    stages: Object.fromEntries(STAGES.map((s) => [s, percentile(latency.stages.get(s)!, 50)])),
    stagesP99: Object.fromEntries(STAGES.map((s) => [s, percentile(latency.stages.get(s)!, 99)])),
    frameResults: latency.frames,
    resultsPerSecond: latency.rate(),
    clickToMask: [...latency.clickToMask],
    clickServer: [...latency.clickServer],
    clickDecoder: [...latency.clickDecoder],
    events: [...events],
    selected: book.selected,
  }),
};

void loadModel();
void loadSources();
// Source statuses change (connected, reconnecting, idle): keep the list current.
setInterval(() => void loadSources(true), 5000);
