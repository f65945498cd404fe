//! `echo-gateway healthcheck URL`: for container health checks in an image
//! without curl. Exit code 0 for a 2xx answer, 1 otherwise.

use std::time::Duration;

/// Checks `url`; returns a line for the log and whether it is healthy.
pub fn check(url: &str, timeout: Duration) -> (bool, String) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent();
    match agent.get(url).call() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            ((200..300).contains(&status), format!("{url}: {status}"))
        }
        Err(e) => (false, format!("{url}: {e}")),
    }
}
