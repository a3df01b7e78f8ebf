//! Connection types shared by the HTTP/1 and HTTP/2 proxy drivers, kept below both so that
//! neither imports the other for them.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// A whole connection, plain TCP or TLS, for code that needs both directions in one value.
pub(crate) trait AsyncIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncIo for T {}

/// The read half of a client or upstream connection, plain TCP or TLS.
pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a client or upstream connection, plain TCP or TLS.
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Size of the proxy's read buffers.
pub(crate) const READ_BUF: usize = 64 * 1024;

/// Writes and flushes: TLS streams hold written bytes in their record buffer until flushed.
pub(crate) async fn write_flush<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    data: &[u8],
) -> std::io::Result<()> {
    w.write_all(data).await?;
    w.flush().await
}
