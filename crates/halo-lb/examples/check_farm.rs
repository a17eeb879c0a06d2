//! bench/director: many real servers on loopback for the health-check benchmark — one
//! process answering a tiny HTTP 200 on `COUNT` consecutive ports from `BASE` on 127.0.0.1.
//! Usage: check_farm BASE COUNT
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() {
    let mut args = std::env::args().skip(1);
    let base: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20000);
    let count: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        for port in base..base.saturating_add(count) {
            let l = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
            tokio::spawn(async move {
                loop {
                    // Out of descriptors (EMFILE) and the like: a pause, never the end of the
                    // listener (a listener that quits shows as a real server down).
                    let Ok((mut s, _)) = l.accept().await else {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    };
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                            .await;
                    });
                }
            });
        }
        println!("listening on 127.0.0.1:{base}..{}", u32::from(base) + u32::from(count) - 1);
        std::future::pending::<()>().await;
    });
}
