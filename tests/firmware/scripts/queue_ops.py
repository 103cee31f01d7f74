# Runs in MicroPython: operations on the flash queue in a directory that outlives the
# process, so a second interpreter run is a "reboot". argv: dir max_frames op...
# ops: add:<kind>:<count>  alt:<pairs> (heartbeat, scan, ...)  free:<seq>  evict  tear  show
#      full  (is_full)  walk:<count>:<free_every> (the wearable's publish pattern: add one
#      frame, peek after the last one peeked, free up to it every <free_every> adds)
import json
import os
import sys

from patrol import frames
from patrol.evqueue import EventQueue

KEY = bytes(range(32))
directory = sys.argv[1]
queue = EventQueue(directory, int(sys.argv[2]))


def show(label):
    stored = queue.peek(100000)
    print(
        json.dumps(
            {
                "key": label,
                "depth": queue.depth(),
                "acked_seq": queue.acked_seq,
                "last_seq": queue.last_seq,
                "seqs": [frames.frame_seq(f) for f in stored],
                "kinds": [f[1] for f in stored],
                "sos": [frames.frame_seq(f) for f in queue.unacked_sos()],
                "after_5": [frames.frame_seq(f) for f in queue.peek(3, 5)],
                "files": sorted(os.listdir(directory)),
            }
        )
    )


def add(kind):
    seq = queue.last_seq + 1
    body = (
        frames.sos_body(1)
        if kind == frames.SOS
        else frames.heartbeat_body(80, 3900, 0, queue.depth() % 65536, [])
    )
    queue.append(frames.encode_frame(kind, 1, 0, 0xA001, seq, 1795579200 + seq, 0, body, KEY))


for i, op in enumerate(sys.argv[3:]):
    parts = op.split(":")
    if parts[0] == "add":
        for _ in range(int(parts[2])):
            add(int(parts[1]))
    elif parts[0] == "alt":
        for _ in range(int(parts[1])):
            add(frames.HEARTBEAT)
            add(frames.NFC_SCAN)
    elif parts[0] == "full":
        print(json.dumps({"key": f"full{i}", "full": queue.is_full(), "depth": queue.depth()}))
    elif parts[0] == "free":
        print(json.dumps({"key": f"free{i}", "freed": queue.free_upto(int(parts[1]))}))
    elif parts[0] == "evict":
        print(json.dumps({"key": f"evict{i}", "runs": [list(r) for r in queue.evict_oldest()]}))
    elif parts[0] == "tear":
        names = sorted(n for n in os.listdir(directory) if n.endswith(".seg"))
        with open(directory + "/" + names[-1], "ab") as f:
            f.write(b"\x00\x40" + bytes(10))  # a record header promising 64 bytes, cut short
    elif parts[0] == "walk":
        sent = queue.acked_seq
        peeked = []
        for k in range(int(parts[1])):
            add(frames.HEARTBEAT)
            for frame in queue.peek(4, sent):
                sent = frames.frame_seq(frame)
                peeked.append(sent)
            if (k + 1) % int(parts[2]) == 0:
                queue.free_upto(sent)
        print(json.dumps({"key": f"walk{i}", "peeked": peeked, "depth": queue.depth()}))
    elif parts[0] == "show":
        show(f"show{i}")
