//! Headless Chromium driven over the DevTools protocol, for the video tests
//! and the video benchmark. A small client over tokio-tungstenite (already in
//! the tree through axum's WebSockets) is enough: the tests only navigate and
//! call `Runtime.evaluate`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The variable `cargo xtask test` sets to the Chromium binary.
pub const CHROMIUM_VAR: &str = "VTH_CHROMIUM";

/// The Chromium to use: `$VTH_CHROMIUM`, else `/usr/bin/chromium` if present.
/// Without one: a panic under `CI`, else `None` after a loud skip notice.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os(CHROMIUM_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but Chromium is not at {} ({CHROMIUM_VAR}): the browser video tests must run in CI \
         (`cargo xtask test` installs Debian's chromium and sets {CHROMIUM_VAR})",
        path.display()
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPING a browser test: no Chromium at {} (set {CHROMIUM_VAR} or run `cargo xtask test`, which installs it)",
        path.display()
    );
    None
}

/// One headless Chromium with its own profile, killed on drop.
pub struct Browser {
    child: Child,
    _profile: TempDir,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Start Chromium on `url` with fake camera and microphone.
    pub async fn launch(chromium: &std::path::Path, url: &str) -> Result<Self> {
        let profile = TempDir::new()?;
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                // The relay listens on loopback; Chromium skips loopback for
                // WebRTC unless told, and would hide its own address behind mDNS.
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", chromium.display()))?;
        let stderr = child.stderr.take().context("chromium stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let browser_ws = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("DevTools listening on ").nth(1) {
                    return Ok(rest.trim().to_owned());
                }
            }
            bail!("chromium exited before its DevTools endpoint was up")
        })
        .await
        .context("waiting for chromium's DevTools endpoint")??;
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = browser_ws
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .context("DevTools address")?
            .to_owned();
        let page_ws = page_target(&http).await?;
        let (page, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .context("connecting to the page's DevTools socket")?;
        Ok(Self {
            child,
            _profile: profile,
            page,
            next_id: 1,
        })
    }

    /// Call a DevTools method on the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.call_in(None, method, params).await
    }

    /// Call a DevTools method in an attached session (`Target.attachToTarget`
    /// with `flatten`), such as an out-of-process iframe's.
    pub async fn call_in(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.page
            .send(Message::Text(msg.to_string().into()))
            .await?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.page.next())
                .await
                .context("DevTools call timed out")?
                .ok_or_else(|| anyhow!("DevTools socket closed"))??;
            let Message::Text(text) = frame else { continue };
            let reply: Value = serde_json::from_str(text.as_str())?;
            if reply["id"] != json!(id) {
                continue; // an event
            }
            if let Some(err) = reply.get("error") {
                bail!("{method} failed: {err}");
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Evaluate `expression` (awaiting a promise) and return its JSON value.
    pub async fn eval(&mut self, expression: &str) -> Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await?;
        if let Some(ex) = result.get("exceptionDetails") {
            bail!("page script threw: {ex}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Stop the browser at once (a participant that disappears without leaving).
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The WebSocket URL of the first page target, once it exists.
async fn page_target(http: &str) -> Result<String> {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(resp) = client.get(format!("http://{http}/json/list")).send().await
            && let Ok(targets) = resp.json::<Vec<Value>>().await
            && let Some(ws) = targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        {
            return Ok(ws.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("chromium opened no page target")
}

/// What the room page reports about its WebRTC session (see `room.js`).
pub const ROOM_STATS_JS: &str = r#"(async () => {
  const pc = window.vthPc;
  const state = window.vthState ? window.vthState() : {};
  if (!pc) return { ready: false, ...state };
  const stats = await pc.getStats();
  const framesByTrack = {};
  let outboundBytes = 0;
  let outboundStreams = 0;
  let outboundPackets = 0;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') framesByTrack[s.trackIdentifier] = s.framesDecoded || 0;
    if (s.type === 'outbound-rtp') { outboundStreams += 1; outboundBytes += s.bytesSent || 0; outboundPackets += s.packetsSent || 0; }
  });
  const decoded = {};
  for (const [streamId, track] of Object.entries(state.remoteVideoTracks || {})) {
    decoded[streamId] = framesByTrack[track] || 0;
  }
  const sendingTracks = pc.getSenders().filter((s) => s.track).length;
  const directions = pc.getTransceivers().map((t) => t.currentDirection);
  return { ready: true, me: state.me, participants: state.participants, errors: state.errors,
           decoded, outboundBytes, outboundPackets, outboundStreams, sendingTracks, directions, firstFrameAt: state.firstFrameAt,
           joinRequestedAt: state.joinRequestedAt };
})()"#;
