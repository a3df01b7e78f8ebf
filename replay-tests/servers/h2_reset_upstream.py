"""An HTTP/2 (h2c, prior knowledge) upstream that answers every request with a head, three
DATA frames ("part1\\n" .. "part3\\n") and then RST_STREAM (INTERNAL_ERROR): an upstream that
fails in the middle of a body, deterministically. Prints "PORT <n>" once listening."""
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from tcp_serve import serve_forever


def serve(sock):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    sid = ev.stream_id
                    conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
                    for i in (1, 2, 3):
                        conn.send_data(sid, b"part%d\n" % i)
                    # The reset goes out in the same write as the data: a proxy then reads
                    # both at once, the case where the data is easiest to lose.
                    conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError):
        return
    finally:
        sock.close()


def main():
    serve_forever(serve)


if __name__ == "__main__":
    sys.exit(main())
