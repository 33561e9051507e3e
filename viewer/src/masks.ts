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

/** The mask as one byte per pixel, row-major (1 inside); null when it is not RLE. */
export function maskPixels(mask: Mask | undefined): Uint8Array | null {
  if (!mask || mask.data.case !== "cocoRle") return null;
  const { width, height } = mask;
  const pixels = new Uint8Array(width * height);
  let index = 0;
  let inside = false;
  for (const run of rleCounts(mask.data.value.counts)) {
    if (inside) {
      for (let i = index; i < index + run; i++) {
        // Column-major index i is pixel (x = i / height, y = i % height).
        pixels[(i % height) * width + Math.floor(i / height)] = 1;
      }
    }
    index += run;
    inside = !inside;
  }
  return pixels;
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
  pixels: Uint8Array | null;
  box?: { x0: number; y0: number; x1: number; y1: number };
}

/** The objects of a result to draw; `chosen` picks a candidate per object (multimask). */
export function drawables(result: FrameResult, chosen: Map<number, number>): Drawn[] {
  const drawn: Drawn[] = [];
  for (const object of result.objects) {
    const candidate = chosen.get(object.objectId) ?? 0;
    const mask = object.candidates.length > candidate ? object.candidates[candidate].mask : object.mask;
    drawn.push({ id: object.objectId, label: `#${object.objectId}`, colour: colourOf(object.objectId), pixels: maskPixels(mask), box: object.bbox });
  }
  for (const auto of result.autoMasks) {
    drawn.push({ id: auto.objectId, label: `a${auto.objectId}`, colour: colourOf(auto.objectId, true), pixels: maskPixels(auto.mask), box: auto.bbox });
  }
  return drawn;
}

/** Paints the masks (alpha 0.45), then boxes and ids, on a canvas the size of the frame. */
export function drawOverlay(canvas: HTMLCanvasElement, width: number, height: number, objects: Drawn[]): void {
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext("2d", { willReadFrequently: true })!;
  const image = ctx.createImageData(width, height);
  const data = image.data;
  for (const object of objects) {
    if (!object.pixels) continue;
    const [r, g, b] = object.colour;
    for (let i = 0; i < object.pixels.length; i++) {
      if (object.pixels[i]) {
        data[4 * i] = r;
        data[4 * i + 1] = g;
        data[4 * i + 2] = b;
        data[4 * i + 3] = 115;
      }
    }
  }
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
