// Masks as the server sends them (pycocotools' compressed RLE) turned into pixels, and the
// overlay drawn from them: each object's mask tinted in its own colour, its box and its id.
import type { FrameResult, Mask } from "./gen/samstream/v1/samstream_pb";

/** Run lengths of pycocotools' compressed RLE string (column-major, zeros first). */
export function rleCounts(counts: string): number[] {
  const runs: number[] = [];
  let p = 0;
  while (p < counts.length) {
    let value = 0;
    let shift = 0;
    let more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      value |= (c & 0x1f) << (5 * shift);
      more = (c & 0x20) !== 0;
      p++;
      shift++;
      if (!more && (c & 0x10) !== 0) value |= -1 << (5 * shift);
    }
    if (runs.length > 2) value += runs[runs.length - 2];
    runs.push(value);
  }
  return runs;
}

/** The mask's run lengths (zeros first, column-major); null when it is not RLE. */
export function maskRuns(mask: Mask | undefined): number[] | null {
  if (!mask || mask.data.case !== "cocoRle") return null;
  return rleCounts(mask.data.value.counts);
}

const PALETTE: [number, number, number][] = [
  [79, 163, 255], [255, 107, 107], [98, 214, 126], [255, 179, 71], [190, 120, 255],
  [72, 219, 219], [255, 120, 200], [200, 200, 90], [140, 160, 255], [255, 150, 110],
];

export function colourOf(id: number, automatic = false): [number, number, number] {
  return PALETTE[(automatic ? id * 7 + 3 : id - 1 + PALETTE.length) % PALETTE.length];
}

export function cssColour(rgb: [number, number, number]): string {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

/** What to draw of one object: its mask, colour and label. */
export interface Drawn {
  id: number;
  label: string;
  colour: [number, number, number];
  /** Run lengths over the frame, column-major as the server sends them. */
  runs: number[] | null;
  box?: { x0: number; y0: number; x1: number; y1: number };
}

/** The objects of a result to draw; `chosen` picks a candidate per object (multimask). */
export function drawables(result: FrameResult, chosen: Map<number, number>): Drawn[] {
  const drawn: Drawn[] = [];
  for (const object of result.objects) {
    const candidate = chosen.get(object.objectId) ?? 0;
    const mask = object.candidates.length > candidate ? object.candidates[candidate].mask : object.mask;
    drawn.push({ id: object.objectId, label: `#${object.objectId}`, colour: colourOf(object.objectId), runs: maskRuns(mask), box: object.bbox });
  }
  for (const auto of result.autoMasks) {
    drawn.push({ id: auto.objectId, label: `a${auto.objectId}`, colour: colourOf(auto.objectId, true), runs: maskRuns(auto.mask), box: auto.bbox });
  }
  return drawn;
}

/** ImageData's bytes are RGBA in memory: as one 32-bit word that depends on the byte order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The overlay's pixels, kept between draws of the same size. */
let image: ImageData | null = null;

/** Paints the masks (alpha 0.45), then boxes and ids, on a canvas the size of the frame. The
 * runs are column-major: each mask pixel is written once where it lies in the row-major image
 * (the pixels outside every mask are only cleared), and the image goes to the canvas as it is,
 * without a scaled or transformed draw, which costs a software canvas far more. */
export function drawOverlay(canvas: HTMLCanvasElement, width: number, height: number, objects: Drawn[]): void {
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  if (!image || image.width !== width || image.height !== height) image = new ImageData(width, height);
  const words = new Uint32Array(image.data.buffer);
  words.fill(0);
  for (const object of objects) {
    if (!object.runs) continue;
    const [r, g, b] = object.colour;
    const rgba = LITTLE_ENDIAN ? ((115 << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | 115) >>> 0;
    let start = 0;
    for (let k = 0; k < object.runs.length; k++) {
      const run = object.runs[k];
      if (k % 2 === 1) fillColumnMajorRun(words, width, height, start, run, rgba);
      start += run;
    }
  }
  const ctx = canvas.getContext("2d", { willReadFrequently: true })!;
  ctx.putImageData(image, 0, 0);
  ctx.font = `${Math.max(12, Math.round(width / 60))}px system-ui, sans-serif`;
  ctx.lineWidth = Math.max(1, width / 640);
  for (const object of objects) {
    const box = object.box;
    if (!box || box.x1 <= box.x0) continue;
    ctx.strokeStyle = cssColour(object.colour);
    ctx.strokeRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
    ctx.fillStyle = cssColour(object.colour);
    ctx.fillText(object.label, box.x0 + 3, Math.max(12, box.y0 - 4));
  }
}

/** Pixels `start`..`start + length` of a column-major walk (down each column, left to right)
 * set to `rgba` in the row-major `words`. */
function fillColumnMajorRun(words: Uint32Array, width: number, height: number, start: number, length: number, rgba: number): void {
  let x = Math.floor(start / height);
  let y = start - x * height;
  for (let n = 0; n < length && x < width; n++) {
    words[y * width + x] = rgba;
    if (++y === height) {
      y = 0;
      x++;
    }
  }
}
