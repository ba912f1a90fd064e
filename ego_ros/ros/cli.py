"""ROS subcommands of `ego-ros`: ``demo`` and ``bag {replay,record,synth,info}``.

Importing this module needs neither rclpy nor a ROS environment: every command imports what it
uses when it runs, so ``ego-ros --help`` and the engine commands work on machines without ROS.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``demo`` and ``bag`` to the `ego-ros` subcommands."""
    from .demo import add_demo_arguments

    p = subparsers.add_parser(
        "demo", help="synthetic camera + Ego node on a private ROS domain: introduce a concept, print recognitions",
        description="Start the toy-world camera and the Ego node as ROS 2 processes on a free, localhost-only "
                    "domain; introduce a personal concept through the node's service; print its recognitions "
                    "beside the camera's ground truth and a standing question's answers; stop everything.")
    add_demo_arguments(p)
    p.set_defaults(func=_demo)

    bag = subparsers.add_parser("bag", help="rosbag2 tools without the ros2 command: replay, record, synth, info")
    sub = bag.add_subparsers(dest="bag_command", required=True, metavar="BAG_COMMAND")

    r = sub.add_parser("replay", help="publish a bag's recorded camera topics (raw CDR bytes, bag stamps)")
    r.add_argument("bag", help="rosbag2 folder (mcap or sqlite3)")
    r.add_argument("--topic", action="append", default=[],
                   help="topic to replay (repeatable; default: every Image/CompressedImage topic)")
    r.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                   help="publish bag topic FROM on TO (repeatable), e.g. /camera/image_raw:=/image")
    r.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: 1.0)")
    r.add_argument("--loop", action="store_true", help="start over at the end (until Ctrl-C)")
    r.add_argument("--reliable", action="store_true", help="reliable QoS (default: sensor-data, best effort)")
    r.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                   help="start once every replayed topic has N subscribers")
    r.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for subscribers")
    r.set_defaults(func=_needs_ros(_replay))

    w = sub.add_parser("record", help="record live topics into a new bag (raw CDR bytes, receive times)")
    w.add_argument("bag", help="new rosbag2 folder to create")
    w.add_argument("--topic", action="append", required=True, help="topic to record (repeatable)")
    w.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    w.add_argument("--max-messages", type=int, default=None, help="stop after this many messages")
    w.add_argument("--reliable", action="store_true", help="reliable QoS (default: sensor-data, best effort)")
    w.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    w.set_defaults(func=_needs_ros(_record))

    s = sub.add_parser("synth", help="write a bag of synthetic toy-camera frames (no ROS needed)")
    s.add_argument("bag", help="new rosbag2 folder to create")
    s.add_argument("--frames", type=int, default=90)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--width", type=int, default=640)
    s.add_argument("--height", type=int, default=480)
    s.add_argument("--fps", type=float, default=30.0)
    s.add_argument("--topic", default="/image")
    s.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of rgb8 Image")
    s.add_argument("--include", action="append", default=[], help="toy-world instance key to show (repeatable)")
    s.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    s.set_defaults(func=_needs_ros(_synth))

    i = sub.add_parser("info", help="topics, types, counts and duration of a bag (JSON)")
    i.add_argument("bag")
    i.set_defaults(func=_needs_ros(_info))


def _needs_ros(command):
    """Turn a missing ROS or rosbags module into a one-line error instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ImportError as exc:
            _err(f"ego-ros {args.command}: error: {exc}. Install the ROS extra: pip install 'ego_ros[ros]' "
                 "(rclpy, message packages and rosbags)")
            return 1

    return run


def _demo(args: argparse.Namespace) -> int:
    from .demo import demo_command

    return demo_command(args)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _replay(args: argparse.Namespace) -> int:
    from .bag_replay import parse_remaps, replay_bag

    try:
        stats = replay_bag(args.bag, args.topic, rate=args.rate, loop=args.loop, remap=parse_remaps(args.remap),
                           reliable=args.reliable, wait_for_subscribers=args.wait_for_subscribers,
                           wait_timeout_s=args.wait_timeout, log=_err)
    except KeyboardInterrupt:
        return 130
    print(json.dumps({"published": stats.published, "loops": stats.loops, "seconds": round(stats.seconds, 3),
                      "topics": stats.topics}))
    return 0


def _record(args: argparse.Namespace) -> int:
    from .bag_replay import record_bag

    counts = record_bag(args.bag, args.topic, seconds=args.seconds, max_messages=args.max_messages,
                        reliable=args.reliable, storage=args.storage, log=_err)
    print(json.dumps({"bag": args.bag, "messages": counts}))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .bag_replay import write_synthetic_bag

    bag = write_synthetic_bag(args.bag, args.frames, seed=args.seed, width=args.width, height=args.height,
                              fps=args.fps, topic=args.topic, compressed=args.compressed, include=args.include,
                              storage=args.storage)
    print(json.dumps({"bag": str(bag.path), "topic": bag.topic, "type": bag.msgtype, "frames": len(bag.timestamps)}))
    return 0


def _info(args: argparse.Namespace) -> int:
    from .bag_replay import bag_info

    print(json.dumps(bag_info(args.bag), indent=1))
    return 0
