//! maxClientCnxns: connections from one address beyond the limit are
//! closed, and a closed connection frees its place.

mod common;

use std::time::Duration;

use common::*;
use protocol::coordinator::ListTopicsRequest;

async fn try_client(coordinator: &TestCoordinator) -> Option<Client> {
    let url = format!("http://{}", coordinator.addr);
    let mut client = Client::connect(url).await.ok()?;
    client.list_topics(ListTopicsRequest {}).await.ok()?;
    Some(client)
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.max_client_cnxns = 2;
    let coordinator = TestCoordinator::start(settings).await;
    let first = try_client(&coordinator).await.expect("first connection");
    let _second = try_client(&coordinator).await.expect("second connection");
    assert!(
        try_client(&coordinator).await.is_none(),
        "a third connection is refused"
    );

    // Closing one frees its place (once the server has seen it close).
    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if try_client(&coordinator).await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed place is reused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    coordinator.stop().await;
}
