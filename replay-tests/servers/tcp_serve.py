"""The accept loop the raw-socket test servers share: listen on a free loopback port, print
"PORT <n>" once listening (what the tests wait for), one thread per connection."""
import socket
import threading


def serve_forever(handle, *args):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    print("PORT %d" % srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn, *args), daemon=True).start()
