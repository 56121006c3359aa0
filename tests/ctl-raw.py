#!/usr/bin/env python3
# Send raw request lines (Python escapes allowed) to a control socket and
# print one reply line per request: for tests of malformed input.
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rb")
for req in sys.argv[2:]:
    s.sendall(req.encode().decode("unicode_escape").encode("latin-1"))
    print(f.readline().decode(errors="replace").rstrip("\n"))
