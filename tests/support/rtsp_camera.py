#!/usr/bin/python3
"""RTSP cameras on 127.0.0.1 for the tests and benchmarks: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0 with python3-gi, hence the system python) serving H.264
(x264enc, zero-latency tuning) at rtsp://127.0.0.1:PORT/<mount> for every --mount.

Every frame carries its own send time: the top 32 px hold 40 blocks of 16x16 px (two rows of
20), black or white, the low 32 bits of the wall clock in milliseconds and an 8-bit checksum,
so a reader can tell how old each frame it decodes is (samstream's `rtsp-latency` benchmark,
tests/rtsp.rs). Frames are pushed by a timer at --fps, stamped when pushed.

    rtsp_camera.py [--port P] --mount NAME [--mount NAME ...] [--fps 10] [--size 320x240]
                   [--user U --password P]

Prints the bound port on stdout, then serves until killed. --port 0 picks a free one.
"""

from __future__ import annotations

import argparse
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

BLOCK = 16
BITS = 40  # 32 bits of milliseconds, 8 bits of checksum
BLACK, WHITE, GREY = 16, 235, 128


def stamp_bits(now_ms: int) -> list[int]:
    value = now_ms & 0xFFFFFFFF
    checksum = (value ^ (value >> 8) ^ (value >> 16) ^ (value >> 24)) & 0xFF
    word = (value << 8) | checksum
    return [(word >> (BITS - 1 - i)) & 1 for i in range(BITS)]


class Camera(GstRtspServer.RTSPMediaFactory):
    def __init__(self, name: str, width: int, height: int, fps: int) -> None:
        super().__init__()
        self.name, self.width, self.height, self.fps = name, width, height, fps
        self.set_shared(True)
        self.set_launch(
            f"( appsrc name=src is-live=true do-timestamp=true format=time max-bytes={width * height * 3} "
            f"caps=video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=800 "
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        self.connect("media-configure", self.on_media_configure)
        chroma = (width // 2) * (height // 2)
        self.chroma = bytes([128]) * (2 * chroma)
        self.frames = 0

    def on_media_configure(self, _factory, media) -> None:
        appsrc = media.get_element().get_by_name("src")
        state = {"alive": True}
        media.connect("unprepared", lambda _m: state.update(alive=False))

        def push() -> bool:
            if not state["alive"]:
                return False
            luma = self.luma(int(time.time() * 1000))
            buffer = Gst.Buffer.new_wrapped(luma + self.chroma)
            return appsrc.emit("push-buffer", buffer) == Gst.FlowReturn.OK

        GLib.timeout_add(max(1, round(1000 / self.fps)), push)

    def luma(self, now_ms: int) -> bytes:
        """A grey frame with a moving bar (so that frames differ) under the time stamp."""
        w, h = self.width, self.height
        frame = bytearray([GREY]) * (w * h)
        self.frames += 1
        bar = (self.frames * 4) % w
        for y in range(2 * BLOCK, h):
            frame[y * w + bar : y * w + min(w, bar + 12)] = bytes([WHITE]) * (min(w, bar + 12) - bar)
        per_row = w // BLOCK
        for i, bit in enumerate(stamp_bits(now_ms)):
            row, col = divmod(i, per_row)
            value = bytes([WHITE if bit else BLACK]) * BLOCK
            for y in range(row * BLOCK, (row + 1) * BLOCK):
                frame[y * w + col * BLOCK : y * w + (col + 1) * BLOCK] = value
        return bytes(frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mount", action="append", required=True)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    assert (width // BLOCK) * 2 >= BITS, "the frame is too narrow for the time stamp"

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for name in args.mount:
        camera = Camera(name, width, height, args.fps)
        if args.user:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role("viewer", "media.factory.access", True)
            permissions.add_permission_for_role("viewer", "media.factory.construct", True)
            camera.set_permissions(permissions)
        mounts.add_factory(f"/{name}", camera)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print(server.get_bound_port(), flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
