//! How many receivers one runtime's relay serves: two Chromium publishers and
//! a growing number of synthetic subscribers (str0m peers that receive RTP
//! and count packets without decoding, so the browsers' cost is out of the
//! measurement). A measurement, run by name; results in docs/benchmarks.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use vtelehealth_tests::browser::{Browser, ROOM_STATS_JS, chromium};

use crate::browser_video::{room_url, video_server, wait_all_decoding};

/// One receive-only participant speaking the relay's signalling; counts
/// the RTP packets it receives until `stop` changes.
async fn synthetic_subscriber(
    server: SocketAddr,
    room: String,
    name: String,
    packets: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let url = format!("ws://{server}/video/dev/{room}/ws?name={name}&role=observer");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let local = socket.local_addr()?;
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut change = rtc.sdp_api();
    change.add_channel("vth".into());
    let (offer, pending) = change.apply().context("an offer")?;
    let mut pending = Some(pending);
    let offer = json!({ "type": "offer", "sdp": offer.to_sdp_string() });
    ws.send(Message::Text(offer.to_string().into())).await?;
    let mut buf = vec![0u8; 2000];
    loop {
        let deadline = loop {
            match rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    socket.send_to(&t.contents, t.destination).await?;
                }
                Output::Event(Event::RtpPacket(_)) => {
                    packets.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(_) => {}
            }
        };
        tokio::select! {
            msg = ws.next() => {
                let Some(Ok(Message::Text(text))) = msg else { return Ok(()) };
                let msg: Value = serde_json::from_str(text.as_str())?;
                let sdp = msg["sdp"].as_str().unwrap_or_default();
                match msg["type"].as_str() {
                    Some("answer") => {
                        let answer = SdpAnswer::from_sdp_string(sdp)?;
                        if let Some(p) = pending.take() {
                            rtc.sdp_api().accept_answer(p, answer)?;
                        }
                    }
                    Some("offer") => {
                        let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(sdp)?)?;
                        let reply = json!({ "type": "answer", "sdp": answer.to_sdp_string() });
                        ws.send(Message::Text(reply.to_string().into())).await?;
                    }
                    _ => {}
                }
            }
            recv = socket.recv_from(&mut buf) => {
                let (n, source) = recv?;
                if let Ok(contents) = buf[..n].try_into() {
                    rtc.handle_input(Input::Receive(
                        Instant::now(),
                        Receive { proto: Protocol::Udp, source, destination: local, contents },
                    ))?;
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {}
            _ = stop.changed() => return Ok(()),
        }
        rtc.handle_input(Input::Timeout(Instant::now()))?;
    }
}

/// CPU seconds used by the server runtime's worker threads (the relay and
/// the HTTP server) and by all the other threads of this process (the
/// test's own thread, which runs the synthetic subscribers).
fn cpu_seconds() -> (f64, f64) {
    let (mut server, mut others) = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = tail.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let seconds = (ticks(11) + ticks(12)) / 100.0;
        // Tokio's default worker name; the test's runtime is current-thread.
        if head.contains("tokio-rt-worker") {
            server += seconds;
        } else {
            others += seconds;
        }
    }
    (server, others)
}

/// RTP packets the browsers have sent so far, all together.
async fn packets_sent(browsers: &mut [(&str, Browser)]) -> u64 {
    let mut total = 0;
    for (_, b) in browsers.iter_mut() {
        let s = b.eval(ROOM_STATS_JS).await.expect("stats");
        total += s["outboundPackets"].as_u64().unwrap_or(0);
    }
    total
}

/// Run with
/// `cargo test -p vtelehealth-tests --test e2e video_relay_capacity -- --ignored --nocapture`
/// (`VTH_VIDEO_LOAD_STEPS`, default `5,10,20,40`, the subscriber counts).
#[tokio::test]
#[ignore = "a measurement, not a test: run it by name"]
async fn video_relay_capacity() {
    let Some(chromium) = chromium() else { return };
    let steps: Vec<usize> = std::env::var("VTH_VIDEO_LOAD_STEPS")
        .unwrap_or_else(|_| "5,10,20,40".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let server = video_server().await;
    let room = "load";
    let mut browsers = Vec::new();
    for name in ["pub1", "pub2"] {
        let url = room_url(&server, room, name, "participant");
        browsers.push((
            name,
            Browser::launch(&chromium, &url).await.expect("browser"),
        ));
    }
    wait_all_decoding(&mut browsers, 2).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut counters: Vec<Arc<AtomicU64>> = Vec::new();
    println!(
        "| synthetic subscribers | forwarded streams (audio + video) | packets/s sent by the publishers (both) | packets/s per subscriber (min / median) | \
         relay threads CPU (% of one core) | subscribers' thread CPU (% of one core) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for &target in &steps {
        while counters.len() < target {
            let c = Arc::new(AtomicU64::new(0));
            counters.push(c.clone());
            let name = format!("sub{}", counters.len());
            tokio::spawn(synthetic_subscriber(
                server.addr,
                room.to_owned(),
                name,
                c,
                stop_rx.clone(),
            ));
        }
        // Let the newcomers connect and the re-offers settle.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let sent0 = packets_sent(&mut browsers).await;
        let before: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let cpu0 = cpu_seconds();
        let window = Duration::from_secs(10);
        tokio::time::sleep(window).await;
        let cpu1 = cpu_seconds();
        let sent = (packets_sent(&mut browsers).await - sent0) as f64 / window.as_secs_f64();
        let mut rates: Vec<f64> = counters
            .iter()
            .zip(&before)
            .map(|(c, b)| (c.load(Ordering::Relaxed) - b) as f64 / window.as_secs_f64())
            .collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "| {target} | {} | {sent:.0} | {:.0} / {:.0} | {:.0} | {:.0} |",
            (target + 1) * 2 * 2,
            rates.first().copied().unwrap_or(0.0),
            rates.get(rates.len() / 2).copied().unwrap_or(0.0),
            (cpu1.0 - cpu0.0) / window.as_secs_f64() * 100.0,
            (cpu1.1 - cpu0.1) / window.as_secs_f64() * 100.0,
        );
    }
    let _ = stop_tx.send(true);
}
