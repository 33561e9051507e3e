#!/usr/bin/env python3
"""A Python client for samstream (grpcio): streams a video file to StreamSegment with point and
box prompts and writes each frame's masks as PNG files.

    python examples/python/samstream_client.py --server 127.0.0.1:50051 --video clip.mp4 \
        --point 160,120 --point 2:40,40 --box 2:10,10,90,90 --out-masks masks/

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="127.0.0.1:50051", help="host:port")
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--point", action="append", default=[], help="[ID:]x,y[,neg]")
    parser.add_argument("--box", action="append", default=[], help="[ID:]x0,y0,x1,y1")
    parser.add_argument("--out-masks", type=Path, help="directory for frame_<n>_object_<id>.png")
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
    if args.out_masks:
        args.out_masks.mkdir(parents=True, exist_ok=True)

    (width, height, fps), frames = video_frames(args.video)
    outbound: queue.Queue = queue.Queue()
    fmt = pb2.MASK_FORMAT_PNG if args.out_masks else pb2.MASK_FORMAT_COCO_RLE
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
                for obj in result.objects:
                    if args.out_masks and obj.mask.HasField("png"):
                        (args.out_masks / f"frame_{result.frame_id:06d}_object_{obj.object_id}.png").write_bytes(obj.mask.png)
                timing = result.timing
                print(json.dumps({
                    "frame_id": result.frame_id,
                    "size": [result.width, result.height],
                    "prompt_revision": result.prompt_revision,
                    "objects": [{"id": o.object_id, "score": round(o.score, 4), "area": o.area} for o in result.objects],
                    "timing_ms": {"encoder": timing.encoder_us / 1e3, "decoder": timing.decoder_us / 1e3, "total": timing.total_us / 1e3},
                }), flush=True)
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
