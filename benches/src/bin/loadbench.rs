//! `loadbench`: direct-to-mock vs Tollgate (all five plugin stages on), same mock, same machine,
//! same run. See docs/benchmarks.md.
//!
//! ```text
//! scripts/build-plugins && cargo build --release -p tollgate
//! cargo run -p benches --release --bin loadbench -- --duration 10
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use benches::driver::{self, LoadResult, LoadSpec};
use benches::mock::{self, MockOptions};
use benches::procstat::ProcStat;
use bytes::Bytes;
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds per scenario (not measured).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Upper bound on measured requests per scenario.
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Streamed chunks per answer and delay between them (ms).
    #[arg(long, default_value_t = 20)]
    chunks: usize,
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// The gateway binary.
    #[arg(long, default_value = "target/release/tollgate")]
    tollgate: PathBuf,
    /// Where the report goes (Markdown and JSON).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Only these scenarios (comma-separated names); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also measure peer gateways (LiteLLM, TensorZero) against the same mock; install them
    /// first with benches/peers/setup.sh.
    #[arg(long)]
    peers: bool,
    #[arg(long, default_value = "target/bench/peers-venv")]
    peers_venv: PathBuf,
    /// Soak: the probability of each upstream fault kind per request (429, 500, reset,
    /// header-then-hang, stall mid-stream, malformed body). Use with `--only tollgate-soak`;
    /// after the run the usage log and ledger are checked against the gateway's own counts.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Where benches/peers/setup.sh installed the Portkey gateway (npm).
    #[arg(long, default_value = "target/bench/portkey")]
    portkey_dir: PathBuf,
    /// Extra arguments for `tollgate keys create` (e.g. `--rpm 100000000 --concurrency 100000`
    /// to measure with rate limits on that never bind).
    #[arg(long, allow_hyphen_values = true, value_delimiter = ' ')]
    key_args: Vec<String>,
    /// TOML appended to the gateway's config (e.g. a `[rate_limits]` section with a Redis URL).
    #[arg(long)]
    extra_config: Option<String>,
    /// The bench org's retention mode (`retain-all` measures content capture and storage).
    #[arg(long)]
    retention_mode: Option<String>,
}

/// A peer gateway process pointed at the mock.
struct Peer {
    child: Child,
    url: String,
    headers: Vec<(String, String)>,
    model: &'static str,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, what: &str, secs: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn start_litellm(venv: &Path, mock: std::net::SocketAddr) -> Result<Peer> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: bench-openai\n    litellm_params:\n      model: openai/gpt-bench\n      api_base: http://{mock}/v1\n      api_key: sk-bench\ngeneral_settings:\n  master_key: sk-bench-master\nlitellm_settings:\n  telemetry: false\n"
        ),
    )?;
    let child = Command::new(venv.join("bin/litellm"))
        .args(["--config"])
        .arg(&config)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--num_workers",
            "1",
        ])
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_TELEMETRY", "False")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting litellm (run benches/peers/setup.sh)")?;
    wait_for_port(port, "litellm", 120)?;
    Ok(Peer {
        child,
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        headers: vec![("authorization".into(), "Bearer sk-bench-master".into())],
        model: "bench-openai",
        _dir: dir,
    })
}

fn start_portkey(dir: &Path, mock: std::net::SocketAddr) -> Result<Peer> {
    let port = free_port()?;
    let script = dir.join("node_modules/@portkey-ai/gateway/build/start-server.js");
    if !script.is_file() {
        bail!("{} missing (run benches/peers/setup.sh)", script.display());
    }
    let loopback = std::fs::canonicalize("benches/peers/portkey/loopback.mjs")?;
    let child = Command::new("node")
        .arg("--import")
        .arg(&loopback)
        .arg(&script)
        .arg(format!("--port={port}"))
        .arg("--headless")
        .env("NODE_ENV", "production")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting portkey (node)")?;
    wait_for_port(port, "portkey", 60)?;
    Ok(Peer {
        child,
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        headers: vec![
            ("x-portkey-provider".into(), "openai".into()),
            ("x-portkey-custom-host".into(), format!("http://{mock}/v1")),
            ("authorization".into(), "Bearer sk-bench".into()),
        ],
        model: "gpt-bench",
        _dir: tempfile::tempdir()?,
    })
}

fn start_tensorzero(venv: &Path, mock: std::net::SocketAddr) -> Result<Peer> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tensorzero.toml");
    std::fs::write(
        &config,
        format!(
            "[models.bench]\nrouting = [\"mock\"]\n\n[models.bench.providers.mock]\ntype = \"openai\"\nmodel_name = \"gpt-bench\"\napi_base = \"http://{mock}/v1/\"\napi_key_location = \"env::BENCH_KEY\"\n"
        ),
    )?;
    let mut child = Command::new(venv.join("bin/python"))
        .arg("benches/peers/tensorzero_gateway.py")
        .arg(&config)
        .env("BENCH_KEY", "sk-bench")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tensorzero (run benches/peers/setup.sh)")?;
    let stdout = child.stdout.take().context("tensorzero stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let base = line.trim().trim_end_matches('/').to_string();
    if !base.starts_with("http") {
        bail!("tensorzero did not report its URL");
    }
    Ok(Peer {
        child,
        // The helper reports the OpenAI-compatible root (`.../openai/v1`).
        url: if base.ends_with("/openai/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/openai/v1/chat/completions")
        },
        headers: vec![],
        model: "tensorzero::model_name::bench",
        _dir: dir,
    })
}

/// ~1 KB OpenAI chat request.
/// Clients sending looping requests in the `tollgate-openai-looping` scenario.
const LOOPING_CLIENTS: usize = 4;

/// A request the hostile transform loops on (its marker in the text), to `bench-loop`.
fn looping_body() -> Bytes {
    let body = serde_json::json!({
        "model": "bench-loop",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "tollgate-test:loop"}]
    });
    Bytes::from(body.to_string())
}

fn chat_body(model: &str, stream: bool) -> Bytes {
    let text = "Summarise the following notes for a status update. ".repeat(4);
    let body = serde_json::json!({
        "model": model,
        "stream": stream,
        "max_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are a concise assistant that writes short status updates."},
            {"role": "user", "content": text},
            {"role": "assistant", "content": "Understood. Please send the notes."},
            {"role": "user", "content": format!("Notes: {}", "build green, tests added, docs pending; ".repeat(8))}
        ]
    });
    Bytes::from(body.to_string())
}

struct Gateway {
    child: Child,
    api: String,
    admin: String,
    key: String,
    org: String,
    config: PathBuf,
    plugin_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_gateway(
    bin: &Path,
    openai: std::net::SocketAddr,
    anthropic: std::net::SocketAddr,
    key_args: &[String],
    extra_config: &str,
    retention_mode: Option<&str>,
) -> Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir)?;
    for entry in
        std::fs::read_dir("target/plugins").context("target/plugins: run scripts/build-plugins")?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::fs::copy(&path, plugin_dir.join(path.file_name().unwrap_or_default()))?;
        }
    }
    // The hostile test transform, for the looping-plugin scenario (it loops on requests that
    // carry its marker and passes every other one through).
    let hostile = Path::new("target/test-plugins/hostile.wasm");
    if hostile.is_file() {
        std::fs::copy(hostile, plugin_dir.join("hostile.wasm"))?;
    }
    let (port, admin) = (free_port()?, free_port()?);
    let config = dir.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
data_dir = "{data}"
threads = 2
[limits]
first_byte_timeout_ms = 2000
stall_timeout_ms = 2000
upstream_timeout_ms = 20000
[plugins]
dir = "{plugins}"
[providers.mock-openai]
base_url = "http://{openai}"
api_key_env = "BENCH_KEY"
transform = "provider-openai"
[providers.mock-anthropic]
base_url = "http://{anthropic}"
api_key_env = "BENCH_KEY"
transform = "provider-anthropic"
auth = "x-api-key"
[[models]]
name = "bench-openai"
routes = [{{ provider = "mock-openai", model = "gpt-bench", input_per_mtok = 0.15, output_per_mtok = 0.6 }}]
[[models]]
name = "bench-soak"
routes = [{{ provider = "mock-openai", model = "gpt-bench", input_per_mtok = 0.15, output_per_mtok = 0.6 }}, {{ provider = "mock-anthropic", model = "claude-bench", input_per_mtok = 3.0, output_per_mtok = 15.0 }}]
[[models]]
name = "bench-anthropic"
routes = [{{ provider = "mock-anthropic", model = "claude-bench", input_per_mtok = 3.0, output_per_mtok = 15.0 }}]
{hostile_config}
{extra_config}
"#,
            data = dir.path().join("data").display(),
            plugins = plugin_dir.display(),
            hostile_config = if hostile.is_file() {
                format!(
                    r#"
[providers.mock-hostile]
base_url = "http://{openai}"
api_key_env = "BENCH_KEY"
transform = "hostile"
[[models]]
name = "bench-loop"
routes = [{{ provider = "mock-hostile", model = "gpt-bench", input_per_mtok = 0.15, output_per_mtok = 0.6 }}]
"#
                )
            } else {
                String::new()
            },
        ),
    )?;
    let cli = |args: &[&str]| -> Result<String> {
        let out = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("TOLLGATE_KEY_SECRET", "bench")
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "tollgate {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let org = cli(&["orgs", "create", "bench"])?;
    if let Some(mode) = retention_mode {
        cli(&["orgs", "retention", &org, "--mode", mode])?;
    }
    let mut create = vec!["keys", "create", "--org", &org];
    create.extend(
        key_args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.is_empty()),
    );
    let key = cli(&create)?;
    cli(&["credits", "add", "--org", &org, "--usd", "1000000"])?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("TOLLGATE_KEY_SECRET", "bench")
        .env("BENCH_KEY", "sk-bench")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        if Instant::now() > deadline {
            bail!("gateway did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Gateway {
        child,
        api: format!("http://127.0.0.1:{port}"),
        admin: format!("127.0.0.1:{admin}"),
        key,
        org,
        config,
        plugin_dir,
        _dir: dir,
    })
}

/// The bare Pingora pass-through (built next to the gateway binary), if present.
struct Bare {
    child: Option<Child>,
    url: String,
}

impl Drop for Bare {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_bare_pingora(tollgate: &Path, upstream: std::net::SocketAddr) -> Result<Bare> {
    let bin = tollgate.with_file_name("bare_pingora");
    let port = free_port()?;
    let child = Command::new(&bin)
        .arg(format!("127.0.0.1:{port}"))
        .arg(upstream.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (cargo build --release -p benches)",
                bin.display()
            )
        })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("bare pingora did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Bare {
        child: Some(child),
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
    })
}

struct Scenario {
    name: &'static str,
    url: String,
    body: Bytes,
    headers: Vec<(String, String)>,
    /// The process under test, whose CPU and memory are reported (None for direct runs).
    pid: Option<u32>,
}

#[derive(serde::Serialize)]
struct Row {
    scenario: String,
    concurrency: usize,
    result: LoadResult,
    /// CPU seconds the gateway under test used during the run (None for direct runs).
    gateway_cpu_s: Option<f64>,
    gateway_rss_mb: Option<f64>,
    reloads: u64,
}

fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1} ms", v as f64 / 1000.0)
    } else {
        format!("{:.3} ms", v as f64 / 1000.0)
    }
}

fn report(rows: &[Row], idle_rss: f64, machine: &str) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "Machine: {machine}. Gateway RSS idle after start: {idle_rss:.1} MB.\n\n"
    ));
    md.push_str("| scenario | c | req/s | vs direct | p50 | p90 | p99 | p99.9 | first byte p50 | added p50 | errors | gw CPU s | gw RSS MB |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let base = if r.scenario.contains("stream") {
            "direct-stream"
        } else {
            "direct"
        };
        let direct = rows
            .iter()
            .find(|d| d.scenario == base && d.concurrency == r.concurrency);
        let ratio = direct.map_or("-".into(), |d| {
            format!("{:.2}", r.result.rps / d.result.rps.max(1e-9))
        });
        let added = direct.map_or("-".into(), |d| {
            let (a, b) = if r.scenario.contains("stream") {
                (r.result.first_byte.p50_us, d.result.first_byte.p50_us)
            } else {
                (r.result.total.p50_us, d.result.total.p50_us)
            };
            format!("{:+.3} ms", (a as f64 - b as f64) / 1000.0)
        });
        let errors: u64 = r.result.errors.values().sum();
        md.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.concurrency,
            r.result.rps,
            ratio,
            us(r.result.total.p50_us),
            us(r.result.total.p90_us),
            us(r.result.total.p99_us),
            us(r.result.total.p999_us),
            us(r.result.first_byte.p50_us),
            added,
            if errors == 0 {
                "0".to_string()
            } else {
                format!("{errors} {:?}", r.result.errors)
            },
            r.gateway_cpu_s.map_or("-".into(), |c| format!("{c:.1}")),
            r.gateway_rss_mb.map_or("-".into(), |m| format!("{m:.1}")),
        ));
    }
    md
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs ({model})")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let opts = MockOptions {
        chunks: args.chunks,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        fault_rate: args.fault_rate,
        ..MockOptions::default()
    };
    let openai = mock::start(opts.clone()).await?;
    let anthropic = mock::start(opts).await?;
    let gw = start_gateway(
        &args.tollgate,
        openai,
        anthropic,
        &args.key_args,
        args.extra_config.as_deref().unwrap_or(""),
        args.retention_mode.as_deref(),
    )?;
    let bare = start_bare_pingora(&args.tollgate, openai)?;
    let mut peers = Vec::new();
    if args.peers {
        type Starter = fn(&Path, std::net::SocketAddr) -> Result<Peer>;
        let starters: [(&str, &Path, Starter); 3] = [
            ("litellm", &args.peers_venv, start_litellm),
            ("tensorzero", &args.peers_venv, start_tensorzero),
            ("portkey", &args.portkey_dir, start_portkey),
        ];
        for (name, dir, start) in starters {
            match start(dir, openai) {
                Ok(peer) => peers.push((name, peer)),
                Err(e) => eprintln!("peer {name} not measured: {e:#}"),
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = gw.child.id();
    let idle_rss = ProcStat::read(pid).map(|s| s.rss_mb).unwrap_or(0.0);
    let auth = vec![("authorization".to_string(), format!("Bearer {}", gw.key))];
    let openai_url = format!("http://{openai}/v1/chat/completions");
    let gateway_url = format!("{}/v1/chat/completions", gw.api);
    let scenario = |name, url: &String, model, stream, headers: &Vec<(String, String)>| Scenario {
        name,
        url: url.clone(),
        body: chat_body(model, stream),
        headers: headers.clone(),
        pid: (url == &gateway_url).then_some(pid),
    };
    let none = Vec::new();
    let mut scenarios = vec![
        scenario("direct", &openai_url, "gpt-bench", false, &none),
        scenario("bare-pingora", &bare.url, "gpt-bench", false, &none),
        scenario(
            "tollgate-openai",
            &gateway_url,
            "bench-openai",
            false,
            &auth,
        ),
        scenario(
            "tollgate-anthropic",
            &gateway_url,
            "bench-anthropic",
            false,
            &auth,
        ),
        scenario("direct-stream", &openai_url, "gpt-bench", true, &none),
        scenario(
            "tollgate-openai-stream",
            &gateway_url,
            "bench-openai",
            true,
            &auth,
        ),
        scenario("tollgate-soak", &gateway_url, "bench-soak", true, &auth),
        // tollgate-openai while LOOPING_CLIENTS other clients send requests that make a
        // plugin (the hostile transform) loop to its deadline.
        scenario(
            "tollgate-openai-looping",
            &gateway_url,
            "bench-openai",
            false,
            &auth,
        ),
        scenario(
            "tollgate-openai-reload",
            &gateway_url,
            "bench-openai",
            false,
            &auth,
        ),
    ];
    for (name, peer) in &peers {
        scenarios.push(Scenario {
            name,
            url: peer.url.clone(),
            body: chat_body(peer.model, false),
            headers: peer.headers.clone(),
            pid: Some(peer.child.id()),
        });
    }
    let mut rows = Vec::new();
    for &c in &args.concurrency {
        for Scenario {
            name,
            url,
            body,
            headers,
            pid: measured,
        } in &scenarios
        {
            if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
                continue;
            }
            let spec = LoadSpec {
                url: url.clone(),
                body: body.clone(),
                headers: headers.clone(),
                concurrency: c,
                warmup: Duration::from_secs(args.warmup),
                duration: Duration::from_secs(args.duration),
                max_requests: args.max_requests,
            };
            // The reload scenario swaps, every 500 ms, a plugin in the request path (auth,
            // routing, the OpenAI transform in turn) between its build and a copy with a
            // different hash (an extra custom section: same code, new version to load).
            let reloader = (*name == "tollgate-openai-reload").then(|| {
                let dir = gw.plugin_dir.clone();
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                let (s, n) = (stop.clone(), count.clone());
                let handle = std::thread::spawn(move || {
                    let mut plugins = Vec::new();
                    for name in ["auth-apikey", "route-policy", "provider-openai"] {
                        let target = dir.join(format!("{name}.wasm"));
                        match std::fs::read(&target) {
                            Ok(original) if !original.is_empty() => {
                                let variant = with_custom_section(&original, b"tollgate-bench");
                                plugins.push((target, [original, variant]));
                            }
                            _ => eprintln!("reload: {} missing, not swapped", target.display()),
                        }
                    }
                    let mut i = 0usize;
                    while !s.load(std::sync::atomic::Ordering::Relaxed) && !plugins.is_empty() {
                        std::thread::sleep(Duration::from_millis(500));
                        let (target, versions) = &plugins[i % plugins.len()];
                        let version = &versions[(i / plugins.len() + 1) % 2];
                        i += 1;
                        let tmp = dir.join(".swap.tmp");
                        if std::fs::write(&tmp, version).is_ok()
                            && std::fs::rename(&tmp, target).is_ok()
                        {
                            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
                (stop, count, handle)
            });
            // The soak samples the gateway's RSS every 30 s.
            let sampler = (*name == "tollgate-soak").then(|| {
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let s = stop.clone();
                let handle = std::thread::spawn(move || {
                    let mut samples = Vec::new();
                    let mut last = Instant::now() - Duration::from_secs(30);
                    while !s.load(std::sync::atomic::Ordering::Relaxed) {
                        if last.elapsed() >= Duration::from_secs(30) {
                            last = Instant::now();
                            samples.push(ProcStat::read(pid).map_or(0.0, |p| p.rss_mb));
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    samples
                });
                (stop, handle)
            });
            let before = measured.and_then(ProcStat::read);
            let result = if *name == "tollgate-openai-looping" {
                let looping = LoadSpec {
                    body: looping_body(),
                    concurrency: LOOPING_CLIENTS,
                    ..spec.clone()
                };
                let (result, looped) = tokio::join!(driver::run(spec), driver::run(looping));
                eprintln!(
                    "{name}: {} looping requests beside ({:.0}/s), answered with {:?}",
                    looped.requests, looped.rps, looped.errors
                );
                result
            } else {
                driver::run(spec).await
            };
            let after = measured.and_then(ProcStat::read);
            let reloads = match reloader {
                Some((stop, count, handle)) => {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    let _ = handle.join();
                    count.load(std::sync::atomic::Ordering::Relaxed)
                }
                None => 0,
            };
            if let Some((stop, handle)) = sampler {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let samples = handle.join().unwrap_or_default();
                let rss: Vec<String> = samples.iter().map(|r| format!("{r:.1}")).collect();
                eprintln!("soak: RSS MB every 30 s: {}", rss.join(", "));
                match soak_check(&args.tollgate, &gw) {
                    Ok(report) => eprintln!("soak: {report}"),
                    Err(e) => eprintln!("soak: CHECK FAILED: {e:#}"),
                }
            }
            let (cpu, rss) = match (before, after) {
                (Some(b), Some(a)) => (Some(a.cpu_seconds - b.cpu_seconds), Some(a.rss_mb)),
                _ => (None, None),
            };
            eprintln!(
                "{name} c{c}: {:.0} req/s, p50 {} us, errors {:?}",
                result.rps, result.total.p50_us, result.errors
            );
            rows.push(Row {
                scenario: name.to_string(),
                concurrency: c,
                result,
                gateway_cpu_s: cpu,
                gateway_rss_mb: rss,
                reloads,
            });
        }
    }
    let md = report(&rows, idle_rss, &machine());
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("loadbench.md"), &md)?;
    std::fs::write(
        args.out.join("loadbench.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "machine": machine(), "idle_rss_mb": idle_rss, "rows": rows,
        }))?,
    )?;
    println!("{md}");
    Ok(())
}

/// `wasm` with a custom section appended: the same code under a different content hash. Valid
/// for core modules and components alike (custom sections may appear anywhere).
fn with_custom_section(wasm: &[u8], name: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(b"variant");
    let mut out = wasm.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// After the soak: every request the gateway answered has exactly one usage record, and the
/// ledger agrees with the usage records' costs.
fn soak_check(bin: &Path, gw: &Gateway) -> Result<String> {
    std::thread::sleep(Duration::from_secs(2)); // the usage writer's last flush
    let cli = |args: &[&str]| -> Result<String> {
        let out = Command::new(bin)
            .arg("--config")
            .arg(&gw.config)
            .args(args)
            .env("TOLLGATE_KEY_SECRET", "bench")
            .output()?;
        if !out.status.success() {
            bail!(
                "tollgate {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let usage = cli(&["usage", "--format", "json", "--limit", "100000000"])?;
    let mut records = 0u64;
    let mut cost: i64 = 0;
    let mut statuses: std::collections::BTreeMap<i64, u64> = Default::default();
    let mut ids = std::collections::HashSet::new();
    for line in usage.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        records += 1;
        cost += v["cost_micros"].as_i64().unwrap_or(0);
        *statuses
            .entry(v["status"].as_i64().unwrap_or(0))
            .or_default() += 1;
        ids.insert(v["request_id"].as_str().unwrap_or("").to_string());
    }
    let balance = cli(&["credits", "balance", "--org", &gw.org])?;
    let balance_micros =
        (balance.trim().trim_start_matches('$').parse::<f64>()? * 1e6).round() as i64;
    let granted: i64 = 1_000_000 * 1_000_000;
    // Requests the gateway counted (all statuses), from its own metrics.
    let mut metrics = String::new();
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&gw.admin)?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        s.read_to_string(&mut metrics)?;
    }
    let answered: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    let ok = records == answered && ids.len() as u64 == records && granted - balance_micros == cost;
    Ok(format!(
        "{} — requests answered {answered}, usage records {records} (unique ids {}), statuses {statuses:?}, \
         charged per usage records {cost} micro-USD, ledger (grants - balance) {} micro-USD",
        if ok { "OK" } else { "MISMATCH" },
        ids.len(),
        granted - balance_micros
    ))
}
