// The page's objects and their prompts: what a click, a shift-click or a drag adds, and the
// PromptUpdate that says so. The page keeps every object's whole prompt, so after a reconnect
// it can replay them into the new session.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { PointLabel, type PromptUpdateSchema } from "./gen/samstream/v1/samstream_pb";

export type PromptUpdateInit = MessageInitShape<typeof PromptUpdateSchema>;

export interface Point { x: number; y: number; positive: boolean }
export interface Box { x0: number; y0: number; x1: number; y1: number }
export interface ObjectPrompts { id: number; points: Point[]; box?: Box }
export interface SavedPrompts { objects: ObjectPrompts[]; selected: number | null }

export class PromptBook {
  readonly objects = new Map<number, ObjectPrompts>();
  selected: number | null = null;
  private nextId = 1;
  private revision = 0n;

  /** Starts a new object and selects it; it is sent with its first point or box. */
  newObject(): number {
    const id = this.nextId++;
    this.objects.set(id, { id, points: [] });
    this.selected = id;
    return id;
  }

  addPoint(x: number, y: number, positive: boolean): PromptUpdateInit {
    const object = this.current();
    object.points.push({ x, y, positive });
    return this.upsert(object);
  }

  setBox(box: Box): PromptUpdateInit {
    const object = this.current();
    object.box = box;
    return this.upsert(object);
  }

  /** Removes the selected object; null when none is selected. */
  removeSelected(): PromptUpdateInit | null {
    const id = this.selected;
    if (id === null) return null;
    this.objects.delete(id);
    this.selected = null;
    return { remove: [id], revision: this.bump() };
  }

  clear(): PromptUpdateInit {
    this.objects.clear();
    this.selected = null;
    return { clear: true, revision: this.bump() };
  }

  /** Every object with a prompt, for a new session after a reconnect; null when there is none. */
  replay(): PromptUpdateInit | null {
    const prompted = [...this.objects.values()].filter((o) => o.points.length > 0 || o.box);
    if (prompted.length === 0) return null;
    return { clear: true, upsert: prompted.map(toMessage), revision: this.bump() };
  }

  /** The objects as they are, to go back to if the server refuses the next update. */
  save(): SavedPrompts {
    const objects = [...this.objects.values()].map((o) => ({ ...o, points: [...o.points] }));
    return { objects, selected: this.selected };
  }

  /** Back to `saved` after the server refused the update at `refused`, unless another update
   * was made since (it was built on the refused one and says what the page shows now). */
  undo(saved: SavedPrompts, refused: bigint): boolean {
    if (this.revision !== refused) return false;
    this.objects.clear();
    for (const object of saved.objects) this.objects.set(object.id, object);
    this.selected = saved.selected;
    return true;
  }

  get lastRevision(): bigint {
    return this.revision;
  }

  private current(): ObjectPrompts {
    const selected = this.selected === null ? undefined : this.objects.get(this.selected);
    return selected ?? this.objects.get(this.newObject())!;
  }

  private upsert(object: ObjectPrompts): PromptUpdateInit {
    return { upsert: [toMessage(object)], revision: this.bump() };
  }

  private bump(): bigint {
    this.revision += 1n;
    return this.revision;
  }
}

function toMessage(object: ObjectPrompts) {
  return {
    objectId: object.id,
    points: object.points.map((p) => ({ x: p.x, y: p.y, label: p.positive ? PointLabel.POSITIVE : PointLabel.NEGATIVE })),
    box: object.box,
  };
}
