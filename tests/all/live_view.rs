//! The agent's live execution view in a real browser: a real `faultline agent` runs a real
//! experiment (the demo service paused while an HTTP probe checks it), and headless Chromium,
//! driven over WebDriver (chromedriver) by fantoccini, plays it live from `/ui`.

use faultline::agent::auth::Role;
use faultline::agent::view::CSP;
use faultline_tests::agent::{Options, TestAgent};
use faultline_tests::{DemoService, privileged};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// Headless Chromium under chromedriver, both in one process group with a private profile and
/// home: [`Browser::close`] ends the session, kills the group, and checks that no process of
/// theirs is left.
struct Browser {
    client: Option<Client>,
    driver: Child,
    /// Whether the driver's group was killed and waited for.
    killed: bool,
    chromium: crate::report::Chromium,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session; `None` (skipped) when
    /// chromium or chromedriver is missing.
    async fn start(test: &str) -> Option<Browser> {
        let binary = crate::report::tool(test, "chromium", "chromium")?;
        let chromedriver = crate::report::tool(test, "chromedriver", "chromium-driver")?;
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ))
            .env("HOME", dir.path().join("home"))
            .env("XDG_CONFIG_HOME", dir.path().join("home/config"))
            .env("XDG_CACHE_HOME", dir.path().join("home/cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let mut browser = Browser {
            client: None,
            driver,
            killed: false,
            chromium: crate::report::Chromium {
                binary: binary.clone(),
                dir: dir.path().to_path_buf(),
            },
            _dir: dir,
        };
        let profile = browser.chromium.dir.join("profile");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": binary,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    "--window-size=1200,1000",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-breakpad",
                    "--disable-crash-reporter",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // fantoccini builds a rustls client even for plain http; rustls needs its provider.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver on {url}: {e}"),
            }
        };
        browser.client = Some(client);
        Some(browser)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Runs `script` (a function body) in the page and gives back what it returns.
    async fn js(&self, script: &str) -> Value {
        self.client()
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` every 50 ms until `ok` accepts what it returns; panics with `what` and
    /// the last value after `timeout`.
    async fn until(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.js(script).await;
            if ok(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; last {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session, kills chromedriver's group and checks no process of it is left.
    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
        self.kill();
    }

    fn kill(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.driver.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
        self.killed = true;
        self.chromium.assert_gone();
        assert!(
            !PathBuf::from(format!("/proc/{}", self.driver.id())).exists(),
            "chromedriver outlived the test"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test (or a failed start) still leaves no browser behind.
        if !self.killed {
            let group = nix::unistd::Pid::from_raw(-(self.driver.id() as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let _ = self.driver.wait();
        }
    }
}

/// What the player shows now, read from its stable hooks.
const SNAPSHOT: &str = r#"
const q = (s) => document.querySelector(s);
const all = (s) => document.querySelectorAll(s).length;
const fault = q('[data-fault="pause-service"]');
const marker = q('#marker');
const problem = q('#problem');
return {
  state: q('#connection').dataset.state,
  status: q('#status').dataset.status,
  end_state: q('#end-state').dataset.endState,
  score: q('#score').dataset.score,
  name: q('#name').textContent,
  title: document.title,
  fault: fault ? fault.dataset.status : null,
  fault_label: fault ? fault.querySelector('text.state').textContent : null,
  marker: marker ? Number(marker.dataset.atMs) : null,
  marker_x: marker ? Number(marker.getAttribute('x1')) : null,
  failed_during: all('[data-probe="service-answers"] .mark[data-verdict="failed"][data-moment="during"]'),
  failed: all('[data-probe] .mark[data-verdict="failed"]'),
  passed: all('[data-probe] .mark[data-verdict="passed"]'),
  log: all('#log li'),
  elements_in_name: q('#name').children.length,
  imgs: all('img'),
  pwned: window.__pwned === undefined ? null : String(window.__pwned),
  href: location.href,
  token: sessionStorage.getItem('faultline.token'),
  problem: problem.hidden ? null : problem.textContent,
  problem_status: problem.hidden ? null : problem.dataset.status,
  form: !q('#token-form').hidden,
  mode: q('#controls').dataset.mode,
};
"#;

/// An experiment name that is markup: the page must show it as text.
const HOSTILE_NAME: &str = "demo <img src=x onerror=window.__pwned=1> survives";

/// The fills (experiment/report/style.rs) of a completed-with-error fault's bar and of a failed
/// check's mark.
const WITH_ERROR_BAR: [u8; 3] = [0xfb, 0x8c, 0x00];
const FAILED_MARK: [u8; 3] = [0xc6, 0x28, 0x28];

/// Opens the player at `page` (its URL with `#token=...`) while the demo-like run plays, and
/// checks what it shows as the run goes: the token leaves the address, the fault turns
/// running, the marker moves, a check fails during the chaos, the log fills, and the end
/// comes with its status, end state and score. Gives back the last snapshot.
async fn watch_a_run(browser: &Browser, page: &str, token: &str) -> Value {
    let started = Instant::now();
    // From a blank page: a change of the fragment alone would not load the page again.
    browser.client().goto("about:blank").await.unwrap();
    browser.client().goto(page).await.unwrap();
    let first = browser
        .until(
            "the player connects",
            Duration::from_secs(15),
            SNAPSHOT,
            |v| v["state"] == "live" || v["state"] == "ended",
        )
        .await;
    eprintln!("connected in {:?}", started.elapsed());
    let href = first["href"].as_str().unwrap();
    assert!(
        !href.contains("token"),
        "the token left the address: {href}"
    );
    assert_eq!(first["token"], token, "the token is kept in the tab");
    assert!(!first["form"].as_bool().unwrap(), "no token form: {first}");

    let running = browser
        .until(
            "the fault turns running",
            Duration::from_secs(20),
            SNAPSHOT,
            |v| v["fault"] == "running",
        )
        .await;
    eprintln!("running after {:?}: {running}", started.elapsed());
    assert_eq!(running["status"], "running");
    assert!(
        running["fault_label"]
            .as_str()
            .unwrap()
            .ends_with(": running")
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = browser.js(SNAPSHOT).await;
    let (a, b) = (
        running["marker"].as_f64().unwrap(),
        later["marker"].as_f64().unwrap(),
    );
    eprintln!("marker at {a} ms, 600 ms later at {b} ms");
    assert!(
        b >= a + 300.0,
        "the marker moves with the time: {a} then {b}"
    );
    assert!(
        later["marker_x"].as_f64().unwrap() > running["marker_x"].as_f64().unwrap(),
        "and so does its line"
    );

    let chaos = browser
        .until(
            "a check fails while the fault runs",
            Duration::from_secs(15),
            SNAPSHOT,
            |v| v["fault"] == "running" && v["failed_during"].as_u64().unwrap() >= 1,
        )
        .await;
    eprintln!("failed check during chaos after {:?}", started.elapsed());
    assert!(chaos["passed"].as_u64().unwrap() >= 1, "{chaos}");
    assert!(
        chaos["log"].as_u64().unwrap() >= 1,
        "the log shows lines: {chaos}"
    );

    let end = browser
        .until("the end", Duration::from_secs(60), SNAPSHOT, |v| {
            v["state"] == "ended"
        })
        .await;
    eprintln!("ended after {:?}: {end}", started.elapsed());
    assert!(end["problem"].is_null(), "{end}");
    end
}

/// Replays the ended run: from its start the fault is pending and no check is drawn yet; at
/// 50× the marker reaches the end again, with every mark of `end` (the last snapshot).
async fn replay(browser: &Browser, end: &Value) {
    let click = |css: &'static str| async move {
        browser
            .client()
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    };
    click("#play").await;
    let start = browser.js(SNAPSHOT).await;
    eprintln!("replay: {start}");
    assert_eq!(start["mode"], "replay");
    assert!(start["marker"].as_f64().unwrap() < 1000.0, "{start}");
    assert_eq!(start["fault"], "pending");
    assert_eq!(start["failed"], 0);
    click("#speed option[value=\"50\"]").await;
    let again = browser
        .until("the replay's end", Duration::from_secs(20), SNAPSHOT, |v| {
            v["marker"] == end["marker"]
        })
        .await;
    for key in ["fault", "failed", "passed", "status", "end_state"] {
        assert_eq!(again[key], end[key], "{key} at the end of the replay");
    }
}

/// The hostile name is text: no element was made of it and no handler ran.
fn assert_name_is_text(snapshot: &Value) {
    assert_eq!(snapshot["name"], HOSTILE_NAME);
    assert!(
        snapshot["title"]
            .as_str()
            .unwrap()
            .starts_with(HOSTILE_NAME),
        "{snapshot}"
    );
    assert_eq!(snapshot["elements_in_name"], 0);
    assert_eq!(snapshot["imgs"], 0, "an <img> was made of the name");
    assert!(snapshot["pwned"].is_null(), "the name's handler ran");
}

/// Saves the screenshot to `target/live-view.png` and checks it shows the run: many colours,
/// the completed-with-error fault's bar and the failed checks' marks.
async fn screenshot(browser: &Browser) {
    let png = browser.client().screenshot().await.unwrap();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = target.parent().unwrap().join("live-view.png");
    std::fs::write(&path, &png).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let mut colours = std::collections::HashSet::new();
    let (mut bar, mut marks) = (0, 0);
    for y in 0..h {
        for x in 0..w {
            let at = y * info.line_size + x * channels;
            let rgb = [buf[at], buf[at + 1], buf[at + 2]];
            colours.insert(rgb);
            bar += usize::from(rgb == WITH_ERROR_BAR);
            marks += usize::from(rgb == FAILED_MARK);
        }
    }
    eprintln!(
        "{}: {w}×{h}, {} colours, {bar} bar pixels, {marks} failed-mark pixels",
        path.display(),
        colours.len()
    );
    assert!(w >= 1000 && h >= 600, "{w}×{h}");
    assert!(
        colours.len() >= 20,
        "a blank page: {} colours",
        colours.len()
    );
    assert!(bar >= 200, "the fault's bar: {bar} pixels");
    assert!(marks >= 50, "a failed check's mark: {marks} pixels");
}

/// Opens the player of `id` with `token`, which the agent refuses with `status`: the page shows
/// the agent's own reason (`reason`, what the API answers the same call) and asks for a token.
async fn refused(browser: &Browser, base: &str, id: &str, token: &str, status: u16, reason: &str) {
    browser.client().goto("about:blank").await.unwrap();
    browser
        .client()
        .goto(&format!("{base}/ui/executions/{id}#token={token}"))
        .await
        .unwrap();
    // When the tab already holds another token the page asks before it takes the link's.
    if let Ok(text) = browser.client().get_alert_text().await {
        assert!(text.contains("different token"), "{text}");
        browser.client().accept_alert().await.unwrap();
    }
    let want = status.to_string();
    let shown = browser
        .until("the refusal", Duration::from_secs(15), SNAPSHOT, |v| {
            v["problem_status"] == want.as_str()
        })
        .await;
    let text = shown["problem"].as_str().unwrap();
    let word = if status == 401 {
        "Unauthorized"
    } else {
        "Forbidden"
    };
    assert!(text.starts_with(&format!("{status} {word}: ")), "{text}");
    assert!(
        text.contains(reason),
        "the agent's reason {reason:?} in {text:?}"
    );
    assert_eq!(shown["state"], "denied");
    assert!(shown["form"].as_bool().unwrap(), "a form asks for a token");
    assert!(!shown["href"].as_str().unwrap().contains("token"));
    if status == 401 {
        assert!(
            shown["token"].is_null(),
            "a token the agent does not know is not kept"
        );
    }
}

/// Types `token` into the page's form and sends it.
async fn give_token(browser: &Browser, token: &str) {
    let input = browser
        .client()
        .find(fantoccini::Locator::Css("#token-input"))
        .await
        .unwrap();
    input.send_keys(token).await.unwrap();
    browser
        .client()
        .find(fantoccini::Locator::Css("#token-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// What the agent answers `GET path` with `token`: the status and the `error` it names.
async fn api_error(agent: &TestAgent, path: &str, token: &str) -> (u16, String) {
    let response = agent
        .client()
        .get(format!("{}{path}", agent.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (status, body["error"].as_str().unwrap().to_string())
}

/// The experiment: lane `chaos` waits 2 s, pauses the demo service for 4 s, waits 1.5 s; an
/// HTTP probe checks the service every 500 ms (it fails while paused), an edge probe before and
/// after.
const EXPERIMENT: &str = r#"
apiVersion: faultline/v1
kind: Experiment
name: "NAME"
team: red
lanes:
  - name: chaos
    steps:
      - wait: 2s
      - name: pause-service
        fault: process-pause@^0.1
        duration: 4s
        targets:
          pids: [PID]
      - wait: 1500ms
probes:
  - name: steady-state
    probe: http-probe@^0.1
    params: { url: "http://127.0.0.1:PORT/", timeout: 1s }
    mode: edge
  - name: service-answers
    probe: http-probe@^0.1
    params: { url: "http://127.0.0.1:PORT/", timeout: 400ms }
    mode: continuous
    interval: 500ms
    timeout: 1s
"#;

/// A policy granting process-pause the service's pid and http-probe its port.
fn policy(service: &DemoService) -> String {
    format!(
        "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"process\"]\nprocess = {{ pids = [{}], signals = [\"stop\"] }}\n\n[[grant]]\ncomponent = \"http-probe@^0.1\"\ncapabilities = [\"outbound\"]\noutbound = {{ destinations = [\"127.0.0.1\"], ports = [\"{}\"] }}\n",
        service.pid(),
        service.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_follows_a_real_run_live_in_chromium() {
    let test = "live_view::the_player_follows_a_real_run_live_in_chromium";
    if !privileged(test) {
        return;
    }
    let service = DemoService::start(faultline_tests::agent::bin().to_str().unwrap());
    let agent = TestAgent::start(Options::with_policy(policy(&service)));
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let base = agent.url().to_string();
    let viewer = agent.token(Role::Viewer).to_string();

    // A runner of team red starts it; the page opens right away, with a viewer's token.
    let text = EXPERIMENT
        .replace("NAME", HOSTILE_NAME)
        .replace("PID", &service.pid().to_string())
        .replace("PORT", &service.port.to_string());
    let body = json!({"experiment": text, "file": "live-view.yaml"}).to_string();
    let response = agent
        .client()
        .post(format!("{base}/v1/experiments"))
        .bearer_auth(agent.token(Role::Runner))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let started: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(status, 201, "{started}\n{}", agent.output());
    let id = started["id"].as_str().unwrap().to_string();

    let end = watch_a_run(
        &browser,
        &format!("{base}/ui/executions/{id}#token={viewer}"),
        &viewer,
    )
    .await;
    assert_name_is_text(&end);
    // The end the page shows is the agent's.
    let record: Value = serde_json::from_str(
        &agent
            .client()
            .get(format!("{base}/v1/experiments/{id}"))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    eprintln!(
        "the agent's record: {} {} {}",
        record["status"], record["end_state"], record["score"]
    );
    assert_eq!(record["status"], "completed-with-error", "{record}");
    assert_eq!(end["status"], "completed-with-error");
    assert_eq!(end["end_state"], "failed");
    assert_eq!(record["end_state"], "FAILED");
    let score = record["score"].as_f64().unwrap();
    assert_eq!(
        end["score"].as_str().unwrap().parse::<f64>().unwrap(),
        score
    );
    assert_eq!(end["fault"], "completed-with-error");
    let failed: usize = record["probes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["checks"].as_array().unwrap())
        .filter(|c| c["verdict"] == "failed")
        .count();
    assert_eq!(end["failed"], failed, "a mark for every failed check");
    let log = browser
        .js("return Array.from(document.querySelectorAll('#log li')).map((li) => li.textContent)")
        .await;
    let log: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    eprintln!("{} log lines, the first: {:?}", log.len(), log.first());
    assert!(log.iter().all(|l| l.starts_with('+')), "{log:?}");
    // The CSP reached the browser: a script element made in the page does not run.
    let inline = browser
        .js("const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.head.append(s); return window.__inline === undefined")
        .await;
    assert_eq!(inline, true, "an inline script ran");
    screenshot(&browser).await;
    replay(&browser, &end).await;

    // The list, in the same tab (the token is in its storage): the run, its name as text.
    browser.client().goto(&format!("{base}/ui/")).await.unwrap();
    let row = format!("#executions tr[data-execution=\"{id}\"]");
    let listed = browser
        .until(
            "the run in the list",
            Duration::from_secs(15),
            &format!(
                "const r = document.querySelector('{row}'); return r && [r.querySelector('a').textContent, r.querySelector('a').getAttribute('href'), document.querySelectorAll('img').length]"
            ),
            |v| !v.is_null(),
        )
        .await;
    assert_eq!(
        listed,
        json!([HOSTILE_NAME, format!("/ui/executions/{id}"), 0])
    );
    browser
        .client()
        .find(fantoccini::Locator::Css(&format!("{row} a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .until(
            "the player from the list",
            Duration::from_secs(15),
            SNAPSHOT,
            |v| v["state"] == "ended" && v["name"] == HOSTILE_NAME,
        )
        .await;

    // A runner of team blue may not see team red's run: the page says why.
    let blue = agent.runner_of("blue").to_string();
    let (status, reason) = api_error(&agent, &format!("/v1/experiments/{id}/events"), &blue).await;
    assert_eq!(status, 403, "{reason}");
    refused(&browser, &base, &id, &blue, 403, &reason).await;
    browser.close().await;
}

/// Starts the experiment (its pause lasting `pause`) as team red's runner: its id.
async fn start_run(agent: &TestAgent, service: &DemoService, pause: &str) -> String {
    let text = EXPERIMENT
        .replace("NAME", HOSTILE_NAME)
        .replace("duration: 4s", &format!("duration: {pause}"))
        .replace("PID", &service.pid().to_string())
        .replace("PORT", &service.port.to_string());
    let body = json!({"experiment": text, "file": "live-view.yaml"}).to_string();
    let response = agent
        .client()
        .post(format!("{}/v1/experiments", agent.url()))
        .bearer_auth(agent.token(Role::Runner))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let started: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(status, 201, "{started}\n{}", agent.output());
    started["id"].as_str().unwrap().to_string()
}

/// The agent dies (SIGKILL) mid-run: the page keeps trying with backoff; an agent started
/// again on the same port and state (recovery resumes the service) answers its old token
/// with 401, and the page shows why and plays the run again with the new agent's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_retries_while_the_agent_is_gone_and_reconnects() {
    let test = "live_view::the_player_retries_while_the_agent_is_gone_and_reconnects";
    if !privileged(test) {
        return;
    }
    let service = DemoService::start(faultline_tests::agent::bin().to_str().unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut first = TestAgent::start(Options {
        listen: Some(listen.clone()),
        ..Options::with_policy(policy(&service))
    });
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let base = first.url().to_string();
    let id = start_run(&first, &service, "60s").await;
    let viewer = first.token(Role::Viewer).to_string();
    browser
        .client()
        .goto(&format!("{base}/ui/executions/{id}#token={viewer}"))
        .await
        .unwrap();
    browser
        .until("the fault runs", Duration::from_secs(20), SNAPSHOT, |v| {
            v["fault"] == "running"
        })
        .await;
    assert_eq!(faultline_tests::proc_state(service.pid()), 'T', "paused");

    first.kill9();
    let gone = browser
        .until("the page retries", Duration::from_secs(20), SNAPSHOT, |v| {
            v["state"] == "retrying"
        })
        .await;
    eprintln!("agent gone: {gone}");
    // Backoff: the waits between attempts grow.
    let mut waits = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while waits.len() < 3 && Instant::now() < deadline {
        let text = browser
            .js("return document.getElementById('connection').textContent")
            .await;
        let wait: Option<f64> = text
            .as_str()
            .and_then(|t| t.strip_prefix("retrying in "))
            .and_then(|t| t.strip_suffix(" s"))
            .and_then(|t| t.parse().ok());
        if let Some(wait) = wait
            && waits.last() != Some(&wait)
        {
            waits.push(wait);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("waits between attempts: {waits:?}");
    assert!(waits.len() >= 3, "{waits:?}");
    assert!(waits[2] > waits[0], "the waits grow: {waits:?}");

    let second = TestAgent::start(Options {
        listen: Some(listen.clone()),
        state_dir: Some(first.state_dir().to_path_buf()),
        ..Options::with_policy(policy(&service))
    });
    assert_ne!(
        faultline_tests::proc_state(service.pid()),
        'T',
        "recovery resumed it"
    );
    let (status, reason) =
        api_error(&second, &format!("/v1/experiments/{id}/events"), &viewer).await;
    assert_eq!(status, 401, "{reason}");
    let refused = browser
        .until(
            "the new agent's 401",
            Duration::from_secs(30),
            SNAPSHOT,
            |v| v["problem_status"] == "401",
        )
        .await;
    assert!(
        refused["problem"].as_str().unwrap().contains(&reason),
        "{refused}"
    );
    give_token(&browser, second.token(Role::Viewer)).await;
    let back = browser
        .until("the run again", Duration::from_secs(20), SNAPSHOT, |v| {
            v["problem"].is_null() && (v["state"] == "live" || v["state"] == "ended")
        })
        .await;
    eprintln!("back: {back}");
    assert_eq!(back["name"], HOSTILE_NAME);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_shows_the_agents_401_reason_and_the_form_takes_another() {
    let test = "live_view::a_wrong_token_shows_the_agents_401_reason_and_the_form_takes_another";
    let agent = TestAgent::start(Options::default());
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let base = agent.url().to_string();
    let id = "01JDZ8X3V9Q6Y2K7M4N5P8R0ST";
    let wrong = "fl_not-a-token-this-agent-minted";
    let (status, reason) = api_error(&agent, &format!("/v1/experiments/{id}/events"), wrong).await;
    assert_eq!(status, 401, "{reason}");
    refused(&browser, &base, id, wrong, 401, &reason).await;
    // The right token in the form: the agent now answers that there is no such run.
    let viewer = agent.token(Role::Viewer).to_string();
    let (status, missing) =
        api_error(&agent, &format!("/v1/experiments/{id}/events"), &viewer).await;
    assert_eq!(status, 404, "{missing}");
    give_token(&browser, &viewer).await;
    let shown = browser
        .until("the 404", Duration::from_secs(15), SNAPSHOT, |v| {
            v["state"] == "missing"
        })
        .await;
    assert_eq!(shown["problem_status"], "404");
    assert!(
        shown["problem"].as_str().unwrap().contains(&missing),
        "{shown}"
    );
    assert_eq!(shown["token"], viewer.as_str());
    assert!(!shown["form"].as_bool().unwrap());
    browser.close().await;
}

/// The agent serves the shell without a token, with its security headers; the data behind it
/// needs one.
#[tokio::test]
async fn the_shell_needs_no_token_and_carries_its_headers() {
    let agent = TestAgent::start(Options::default());
    let client = agent.client();
    for (path, kind) in [
        ("/ui/", "text/html; charset=utf-8"),
        (
            "/ui/executions/01JDZ8X3V9Q6Y2K7M4N5P8R0ST",
            "text/html; charset=utf-8",
        ),
        ("/ui/view.js", "text/javascript; charset=utf-8"),
        ("/ui/view.css", "text/css; charset=utf-8"),
    ] {
        let response = client
            .get(format!("{}{path}", agent.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], kind, "{path}");
        assert_eq!(headers["content-security-policy"], CSP, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
    }
    for path in [
        "/v1/experiments",
        "/v1/experiments/01JDZ8X3V9Q6Y2K7M4N5P8R0ST/events",
    ] {
        let response = client
            .get(format!("{}{path}", agent.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
}
