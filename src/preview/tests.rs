//! The thumbnail task with a fake fetch, on paused tokio time: one fetch per channel however
//! many ask, the cache and its expiry, failures not kept, abandoned fetches stopped.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";
const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";

/// Takes five seconds per fetch; answers `jpeg-<n>` for the n-th fetch, or fails when `fail`.
#[derive(Default)]
struct Fake {
    started: AtomicUsize,
    /// Fetches dropped before they finished.
    abandoned: Arc<AtomicUsize>,
    fail: bool,
}

/// Counts a fetch dropped before [`Unfinished::finish`].
struct Unfinished(Option<Arc<AtomicUsize>>);

impl Unfinished {
    fn finish(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(abandoned) = &self.0 {
            abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Fetch for Fake {
    fn fetch(&self, _locator: Arc<dyn SourceLocator>) -> BoxFuture<'static, Result<Bytes, PreviewError>> {
        let n = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let mut unfinished = Unfinished(Some(Arc::clone(&self.abandoned)));
        let fail = self.fail;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            unfinished.finish();
            if fail {
                Err(PreviewError::Failed("no picture".into()))
            } else {
                Ok(Bytes::from(format!("jpeg-{n}")))
            }
        })
    }
}

struct Nowhere;

impl SourceLocator for Nowhere {
    fn locate(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async { Ok("http://127.0.0.1:9/".to_owned()) })
    }

    fn connected(&self, _outcome: crate::upstream::SourceOutcome) {}
}

fn start(fake: Fake) -> (PreviewHandle, Arc<Fake>) {
    let fake = Arc::new(fake);
    let handle = spawn_with(
        Arc::clone(&fake) as Arc<dyn Fetch>,
        Duration::from_secs(60),
        CancellationToken::new(),
    );
    (handle, fake)
}

async fn get(handle: &PreviewHandle, reference: &str) -> Result<Preview, PreviewError> {
    handle.get(reference.parse().unwrap(), Arc::new(Nowhere)).await
}

#[tokio::test(start_paused = true)]
async fn one_fetch_serves_every_client_and_the_cache_holds_it_for_its_ttl() {
    let (handle, fake) = start(Fake::default());
    let (a, b) = tokio::join!(get(&handle, HD), get(&handle, HD));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.jpeg.as_ref(), b.jpeg.as_ref()), (&b"jpeg-1"[..], &b"jpeg-1"[..]));
    assert_eq!(a.max_age, Duration::from_secs(60));
    assert_eq!(fake.started.load(Ordering::SeqCst), 1);

    tokio::time::advance(Duration::from_secs(59)).await;
    let cached = get(&handle, HD).await.unwrap();
    assert_eq!(cached.jpeg.as_ref(), b"jpeg-1");
    assert_eq!(
        cached.max_age,
        Duration::from_secs(1),
        "clients may keep it as long as xg2g does"
    );
    assert_eq!(fake.started.load(Ordering::SeqCst), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(get(&handle, HD).await.unwrap().jpeg.as_ref(), b"jpeg-2");
    // Another channel is another fetch.
    assert_eq!(get(&handle, SD).await.unwrap().jpeg.as_ref(), b"jpeg-3");
}

#[tokio::test(start_paused = true)]
async fn failures_are_not_kept() {
    let (handle, fake) = start(Fake {
        fail: true,
        ..Fake::default()
    });
    let error = get(&handle, SD).await.unwrap_err();
    assert_eq!(error.code(), "preview-failed");
    assert!(get(&handle, SD).await.is_err());
    assert_eq!(fake.started.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_fetch_nobody_waits_for_is_stopped() {
    let (handle, fake) = start(Fake::default());
    let waiting = tokio::spawn({
        let handle = handle.clone();
        async move { get(&handle, HD).await }
    });
    // Let it ask, then leave long before the fetch is done.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.started.load(Ordering::SeqCst), 1);
    waiting.abort();
    let _ = waiting.await;
    tokio::time::sleep(SWEEP + Duration::from_millis(1)).await;
    assert_eq!(
        fake.abandoned.load(Ordering::SeqCst),
        1,
        "the fetch was dropped unfinished"
    );
    // Nothing was cached, and the next client starts afresh.
    assert_eq!(get(&handle, HD).await.unwrap().jpeg.as_ref(), b"jpeg-2");
}
