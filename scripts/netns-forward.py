#!/usr/bin/python3
"""netns-forward.py: a TCP port of this network namespace forwarded to an address inside
another network namespace.

scripts/demo.sh keeps its stack and registry in a network namespace of their own (named,
e.g. /run/netns/frun-demo) so that nothing changes in the host's network (no bridge, route
or firewall rule), and makes the stack's published port reachable at the host's
127.0.0.1:PORT with this forwarder: it listens here, then enters the other namespace, so
every connection it makes to the target is made there.

usage: netns-forward.py --listen 127.0.0.1:8080 --netns /run/netns/frun-demo \\
                        --to 127.0.0.1:8080 [--ready-file FILE]

It writes FILE (its pid) once it listens. It ends on SIGTERM/SIGINT; connections in flight
are cut then.
"""

import argparse
import ctypes
import os
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def addr(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("want HOST:PORT, got %r" % s)
    return host.strip("[]"), int(port)


def enter_netns(path):
    """setns(2) the calling thread into the network namespace at `path`; threads started
    afterwards inherit it."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns(%s): %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


def pump(src, dst):
    """Copies src to dst until EOF, then half-closes dst."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(client, target):
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError as e:
        print("netns-forward: connect %s:%d: %s" % (target[0], target[1], e), file=sys.stderr)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=addr, required=True)
    ap.add_argument("--netns", required=True, help="path of the target network namespace")
    ap.add_argument("--to", type=addr, required=True)
    ap.add_argument("--ready-file")
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.listen[0] else socket.AF_INET
    listener = socket.create_server(args.listen, family=family, backlog=128)
    enter_netns(args.netns)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(tmp, args.ready_file)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, args.to), daemon=True).start()


if __name__ == "__main__":
    main()
