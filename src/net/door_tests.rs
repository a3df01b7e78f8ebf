//! Tests of `door`, in their own file so that the module holds only its logic.

use super::*;
use tokio::io::AsyncReadExt;

/// Says which protocol the door picked; asks for interception when sent `CONNECT`.
struct Probe;

impl Service for Probe {
    type Carry = ();

    async fn serve_h1<S: Io>(
        self: Arc<Self>,
        mut stream: S,
        origin: Origin,
        _: Option<()>,
        _: Shutdown,
    ) -> H1Exit<S> {
        let mut buf = [0u8; 7];
        if stream.read_exact(&mut buf).await.is_err() {
            return H1Exit::Closed;
        }
        if &buf == b"CONNECT" {
            return H1Exit::Intercept {
                stream,
                authority: "example.test:443".into(),
                early: Bytes::new(),
                carry: (),
            };
        }
        let tag = if origin.can_intercept() { "h1+" } else { "h1" };
        let _ = stream.write_all(tag.as_bytes()).await;
        H1Exit::Closed
    }

    async fn serve_h2<S: Io>(
        self: Arc<Self>,
        mut stream: S,
        _: Origin,
        _: Option<()>,
        _: Shutdown,
    ) {
        // Read everything sent, so closing sends FIN rather than RST.
        let mut preface = [0u8; 24];
        let _ = stream.read_exact(&mut preface).await;
        let _ = stream.write_all(b"h2").await;
    }
}

async fn ask(addr: SocketAddr, send: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(send).await.unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out).await;
    out
}

#[tokio::test]
async fn the_door_routes_by_preface_and_refuses_interception_without_a_ca() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = super::super::shutdown_pair();
    let door = Arc::new(Door::new());
    let served =
        tokio::spawn(door.serve(listener, Arc::new(Probe), shutdown, Duration::from_secs(1)));
    // Exactly what the probe reads: unread bytes would make the close a reset.
    assert_eq!(ask(addr, b"GET /\r\n").await, "h1");
    assert_eq!(ask(addr, super::super::H2_PREFACE).await, "h2");
    let refused = ask(addr, b"CONNECT").await;
    assert!(refused.starts_with("HTTP/1.1 502 "), "{refused}");
    trigger.trigger();
    served.await.unwrap();
}

#[tokio::test]
async fn prefixed_serves_the_early_bytes_first() {
    let (mut a, b) = tokio::io::duplex(64);
    a.write_all(b" world").await.unwrap();
    drop(a);
    let mut p = Prefixed {
        early: Bytes::from_static(b"hello"),
        inner: b,
    };
    let mut out = String::new();
    p.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "hello world");
}

#[test]
fn a_lazy_interceptor_builds_only_when_asked() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let lazy = LazyInterceptor::new(move || {
        seen.fetch_add(1, Ordering::Relaxed);
        Err("no CA here".into())
    });
    assert!(!lazy.is_built());
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    assert!(lazy.acceptor().is_none());
    assert!(lazy.acceptor().is_none());
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "a failed build is not retried"
    );
}
