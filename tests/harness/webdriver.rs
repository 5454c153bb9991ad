//! A real browser for tests: Debian's headless Chromium, driven through
//! chromedriver with the W3C WebDriver protocol (JSON over HTTP, spoken
//! here through hyper's client; no WebDriver crate).
//!
//! [`Browser::start`] answers `None` (the test says it skipped) when
//! `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing, except under
//! `CI`, where a missing browser fails the test: `.ci/run` installs both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key WebDriver names a found element under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One chromedriver process and one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    rt: tokio::runtime::Runtime,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium of `width` x `height`,
    /// with its profile and logs under `dir`. `None` when the browser is
    /// not installed and `CI` is not set.
    pub fn start(dir: &Path, width: u32, height: u32) -> Option<Browser> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {missing:?} is missing: install chromium and chromium-driver"
            );
            eprintln!(
                "skipped: {missing:?} not installed (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = super::dirs::free_port();
        let log =
            std::fs::File::create(dir.join("chromedriver.log")).expect("create the driver log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            rt,
        };
        browser.wait_for_driver();
        let profile: PathBuf = dir.join("chromium-profile");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // Containers run tests as root, where the sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created = browser.call("POST", "/session", Some(caps));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_string();
        Some(browser)
    }

    fn wait_for_driver(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.rt.block_on(self.send("GET", "/status", None));
            if matches!(&status, Ok(v) if v["value"]["ready"] == true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 30 s: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let answer = self
            .rt
            .block_on(self.send(method, path, body))
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        if answer["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let bytes = Bytes::from(body.map(|b| b.to_string()).unwrap_or_default());
        let driver = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let (_status, answer) = super::http::exchange(driver, method, path, bytes).await?;
        serde_json::from_slice(&answer).map_err(|e| format!("not JSON ({e}): {answer:?}"))
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page; what it returns.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// The first element matching the CSS `selector` (WebDriver's id).
    pub fn find(&self, selector: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": selector })),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {found}"))
            .to_string()
    }

    /// Clicks the element matching `selector`, as a user would.
    pub fn click(&self, selector: &str) {
        let element = self.find(selector);
        self.session_call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    /// Types `text` into the element matching `selector`.
    pub fn type_into(&self, selector: &str, text: &str) {
        let element = self.find(selector);
        self.session_call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self.session_call("GET", "/screenshot", None);
        let encoded = shot.as_str().expect("a base64 screenshot");
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("a base64 screenshot")
    }

    /// Runs `script` until it returns something other than null or false
    /// (what it returned), or panics after `timeout` naming `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.execute(script, args.clone());
            if !got.is_null() && got != Value::Bool(false) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; the page says: {}",
                self.execute("return document.body.innerText", json!([]))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.rt.block_on(self.send("DELETE", &path, None));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
