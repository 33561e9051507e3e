#!/usr/bin/env python3
"""A Python client for samstream (grpcio): streams a video file to StreamSegment with point and
box prompts and writes each frame's masks as PNG files, or watches a server-side source.

    python examples/python/samstream_client.py --server 127.0.0.1:50051 --video clip.mp4 \
        --point 160,120 --point 2:40,40 --box 2:10,10,90,90 --out-masks masks/
    python examples/python/samstream_client.py --server envoy:8080 --source lobby --point 160,120

A server-side source is watched the way every client should watch one: with the
x-samstream-source header (the proxy's ring hash keeps a camera's viewers on one replica) and
reconnecting, with backoff and the prompts sent again, when the stream ends with UNAVAILABLE
(the source moved to another replica), INTERNAL or CANCELLED (what a proxy reports when a
replica dies).

Frames are decoded by ffmpeg (raw RGB over a pipe) and sent as raw RGB8 images; each frame
waits for its result, so every frame gets masks. The gRPC stubs are generated from
proto/samstream/v1/samstream.proto with grpcio-tools on first use (into generated/ beside this
file). Prints one JSON line per result (frame id, objects with area and score, stage timings).
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
GENERATED = HERE / "generated"


def stubs():
    """Imports the generated modules, generating them first when the proto is newer."""
    proto = PROTO_ROOT / "samstream/v1/samstream.proto"
    target = GENERATED / "samstream/v1/samstream_pb2.py"
    if not target.exists() or target.stat().st_mtime < proto.stat().st_mtime:
        from grpc_tools import protoc

        GENERATED.mkdir(exist_ok=True)
        args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={GENERATED}", f"--grpc_python_out={GENERATED}", str(proto)]
        if protoc.main(args) != 0:
            raise SystemExit("generating the gRPC stubs failed")
    sys.path.insert(0, str(GENERATED))
    from samstream.v1 import samstream_pb2, samstream_pb2_grpc

    return samstream_pb2, samstream_pb2_grpc


def video_frames(path: Path):
    """(width, height, fps) and an iterator of raw RGB frames, decoded by ffmpeg."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height,r_frame_rate", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    width, height = int(stream["width"]), int(stream["height"])
    num, den = (int(v) for v in stream["r_frame_rate"].split("/"))
    fps = num / den if den else 10.0

    def frames():
        decoder = subprocess.Popen(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
        size = width * height * 3
        try:
            while True:
                data = decoder.stdout.read(size)
                if len(data) < size:
                    return
                yield data
        finally:
            decoder.kill()
            decoder.wait()

    return (width, height, fps), frames()


def parse_prompt(text: str, count: int) -> tuple[int, list[float], str | None]:
    object_id, _, rest = text.rpartition(":")
    parts = rest.split(",")
    values = [float(v) for v in parts[:count]]
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"{text}: expected {count} numbers")
    return int(object_id or 1), values, parts[count] if len(parts) > count else None


AFFINITY_HEADER = "x-samstream-source"
RETRYABLE = ("UNAVAILABLE", "INTERNAL", "CANCELLED")


def print_result(result, out_masks: Path | None, previews: Path | None = None) -> None:
    for obj in result.objects:
        if out_masks and obj.mask.HasField("png"):
            (out_masks / f"frame_{result.frame_id:06d}_object_{obj.object_id}.png").write_bytes(obj.mask.png)
    if previews and result.HasField("preview"):
        # The frame the masks belong to, as the server saw it (server-side sources only).
        (previews / f"frame_{result.frame_id:06d}.jpg").write_bytes(result.preview.jpeg)
    timing = result.timing
    print(json.dumps({
        "frame_id": result.frame_id,
        "size": [result.width, result.height],
        "prompt_revision": result.prompt_revision,
        "frames_dropped": result.frames_dropped,
        "objects": [{"id": o.object_id, "score": round(o.score, 4), "area": o.area} for o in result.objects],
        "timing_ms": {"encoder": timing.encoder_us / 1e3, "decoder": timing.decoder_us / 1e3, "total": timing.total_us / 1e3},
    }), flush=True)


def watch_source(args, pb2, pb2_grpc, objects, fmt) -> int:
    """Results of a server-side source until --max-frames, reconnecting when worth it."""
    import grpc

    channel = grpc.insecure_channel(args.server)
    stub = pb2_grpc.SegmenterStub(channel)
    metadata = [(AFFINITY_HEADER, args.source)] + ([("authorization", f"Bearer {args.token}")] if args.token else [])
    preview = pb2.PreviewOptions(max_side=4096) if args.save_previews else None
    start = pb2.StreamStart(source_name=args.source, mask_options=pb2.MaskOptions(format=fmt), preview=preview)
    prompts = pb2.PromptUpdate(upsert=list(objects.values()), revision=1)
    received, failures = 0, 0
    while args.max_frames is None or received < args.max_frames:
        done = queue.Queue()

        def requests():
            yield pb2.StreamRequest(start=start)
            yield pb2.StreamRequest(prompts=prompts)
            done.get()  # keeps the request side open until the viewer leaves

        try:
            for response in stub.StreamSegment(requests(), metadata=metadata):
                if response.HasField("event"):
                    print(json.dumps({"event": pb2.EventKind.Name(response.event.kind), "message": response.event.message}), file=sys.stderr)
                    continue
                failures = 0
                received += 1
                print_result(response.result, args.out_masks, args.save_previews)
                if args.max_frames is not None and received >= args.max_frames:
                    break
            else:
                return 0  # the source ended
        except grpc.RpcError as error:
            if error.code().name not in RETRYABLE or failures >= 10:
                print(f"stream failed: {error.code().name}: {error.details()}", file=sys.stderr)
                return 1
            failures += 1
            wait = min(0.2 * 2 ** (failures - 1), 5.0)
            print(json.dumps({"reconnect": error.code().name, "message": error.details(), "in_s": wait}), file=sys.stderr)
            time.sleep(wait)
        finally:
            done.put(None)
    channel.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="127.0.0.1:50051", help="host:port")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--video", type=Path, help="a local video, sent frame by frame")
    what.add_argument("--source", help="a server-side source by name (see ListSources)")
    parser.add_argument("--point", action="append", default=[], help="[ID:]x,y[,neg]")
    parser.add_argument("--box", action="append", default=[], help="[ID:]x0,y0,x1,y1")
    parser.add_argument("--out-masks", type=Path, help="directory for frame_<n>_object_<id>.png")
    parser.add_argument("--save-previews", type=Path, help="with --source: directory for frame_<n>.jpg, the frames the masks belong to")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--token", help="bearer token, where the server requires one")
    args = parser.parse_args()

    pb2, pb2_grpc = stubs()
    import grpc

    objects: dict[int, object] = {}
    for text in args.point:
        oid, (x, y), label = parse_prompt(text, 2)
        obj = objects.setdefault(oid, pb2.ObjectPrompt(object_id=oid))
        obj.points.append(pb2.Point(x=x, y=y, label=pb2.POINT_LABEL_NEGATIVE if label == "neg" else pb2.POINT_LABEL_POSITIVE))
    for text in args.box:
        oid, (x0, y0, x1, y1), _ = parse_prompt(text, 4)
        objects.setdefault(oid, pb2.ObjectPrompt(object_id=oid)).box.CopyFrom(pb2.Box(x0=x0, y0=y0, x1=x1, y1=y1))
    if not objects:
        parser.error("give at least one --point or --box")
    for directory in (args.out_masks, args.save_previews):
        if directory:
            directory.mkdir(parents=True, exist_ok=True)

    fmt = pb2.MASK_FORMAT_PNG if args.out_masks else pb2.MASK_FORMAT_COCO_RLE
    if args.source:
        return watch_source(args, pb2, pb2_grpc, objects, fmt)

    (width, height, fps), frames = video_frames(args.video)
    outbound: queue.Queue = queue.Queue()
    outbound.put(pb2.StreamRequest(start=pb2.StreamStart(client_frames=pb2.ClientFrames(), mask_options=pb2.MaskOptions(format=fmt))))
    outbound.put(pb2.StreamRequest(prompts=pb2.PromptUpdate(upsert=list(objects.values()), revision=1)))

    def requests():
        while (message := outbound.get()) is not None:
            yield message

    channel = grpc.insecure_channel(args.server, options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
    grpc.channel_ready_future(channel).result(timeout=30)
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else None
    responses = pb2_grpc.SegmenterStub(channel).StreamSegment(requests(), metadata=metadata)
    sent = 0
    try:
        for data in frames:
            if args.max_frames is not None and sent >= args.max_frames:
                break
            sent += 1
            image = pb2.Image(raw=pb2.RawImage(width=width, height=height, format=pb2.PIXEL_FORMAT_RGB8, data=data))
            outbound.put(pb2.StreamRequest(frame=pb2.Frame(image=image, frame_id=sent, timestamp_us=int((sent - 1) / fps * 1e6))))
            for response in responses:
                if response.HasField("event"):
                    print(json.dumps({"event": pb2.EventKind.Name(response.event.kind), "message": response.event.message}), file=sys.stderr)
                    if response.event.kind == pb2.EVENT_KIND_REJECTED:
                        return 1
                    continue
                result = response.result
                if result.frame_id != sent:
                    continue
                print_result(result, args.out_masks)
                break
            else:
                print("the stream ended early", file=sys.stderr)
                return 1
    finally:
        outbound.put(None)
        channel.close()
    print(json.dumps({"frames": sent}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
