//! The queue task on paused tokio time: order, refusals, cancellation, no lost slots, and
//! requests for several slots at once (a ladder) that nobody overtakes.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use futures_util::FutureExt as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const SD: &str = "1:0:1:6F0B:44D:1:C00000:0:0:0:";
const HD: &str = "1:0:19:283D:3FB:1:C00000:0:0:0:";

type Waiter = Pin<Box<dyn Future<Output = Result<EncoderPermit, QueueError>> + Send>>;

fn config(workers: u32, size: u32, max_wait: Duration) -> Config {
    let mut config = Config::default();
    config.gpu_queue.workers = workers;
    config.gpu_queue.size = size;
    config.gpu_queue.max_wait = max_wait;
    config.gpu_queue.active_window = Duration::from_secs(10);
    config
}

fn queue(workers: u32, size: u32, max_wait: Duration) -> (EncoderQueue, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let q = EncoderQueue::spawn(
        &config(workers, size, max_wait),
        Arc::clone(&metrics),
        CancellationToken::new(),
    );
    (q, metrics)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn session(client: u8, channel: &str) -> Request {
    Request::Session {
        client: ip(client),
        channel: channel.to_owned(),
    }
}

/// Starts waiting: polls the request once, which puts it in line (the task then sees it
/// before any later command).
fn enqueue(q: &EncoderQueue, request: Request) -> Waiter {
    enqueue_many(q, request, 1)
}

/// [`enqueue`] for `slots` slots at once.
fn enqueue_many(q: &EncoderQueue, request: Request, slots: u32) -> Waiter {
    let q = q.clone();
    let mut waiter: Waiter = Box::pin(async move { q.acquire_many(request, slots).await });
    assert!(
        (&mut waiter).now_or_never().is_none(),
        "a free slot was expected to be busy"
    );
    waiter
}

fn waiting(stats: &QueueStats) -> usize {
    stats.waiting.iter().sum()
}

/// Whether `waiter` still waits, once the task has caught up with everything sent so far.
async fn still_waits(q: &EncoderQueue, waiter: &mut Waiter) -> bool {
    q.stats().await;
    waiter.now_or_never().is_none()
}

fn active_workers(metrics: &Metrics) -> String {
    line(&metrics.encode(), "xg2g_gpu_queue_active_workers")
}

fn line(text: &str, prefix: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn one_slot_serves_active_then_normal_then_preview_first_come_first_served() {
    let (q, metrics) = queue(1, 100, Duration::from_secs(30));
    let holder = q.acquire(session(9, SD)).await.unwrap();
    assert_eq!(holder.priority(), Priority::Normal);
    // Client 3 and client 6 watched HD a moment ago: their requests are Active.
    q.touch(ip(3), HD);
    let _watching = q.watching(ip(6), HD);
    let order = [
        ("preview-1", Request::Preview),
        ("normal-2", session(2, HD)),
        ("active-3", session(3, HD)),
        ("normal-4", session(4, SD)),
        ("preview-5", Request::Preview),
        ("active-6", session(6, HD)),
        // Client 3 is active on HD only.
        ("normal-7", session(3, SD)),
    ];
    let (done_tx, mut done) = mpsc::unbounded_channel();
    for (label, request) in order {
        let waiter = enqueue(&q, request);
        let tx = done_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((label, waiter.await));
        });
    }
    let stats = q.stats().await;
    assert_eq!(stats.waiting, [2, 3, 2], "preview, normal, active");
    assert_eq!(stats.free, 0);
    let text = metrics.encode();
    assert_eq!(
        line(&text, "xg2g_gpu_queue_size{priority=\"normal\"}"),
        "xg2g_gpu_queue_size{priority=\"normal\"} 3"
    );

    drop(holder);
    let mut served = Vec::new();
    for _ in 0..7 {
        let (label, permit) = done.recv().await.unwrap();
        let permit = permit.unwrap();
        served.push((label, permit.priority()));
        // Holding it a while: nobody else gets in meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(done.try_recv().is_err());
        drop(permit);
    }
    assert_eq!(
        served,
        [
            ("active-3", Priority::Active),
            ("active-6", Priority::Active),
            ("normal-2", Priority::Normal),
            ("normal-4", Priority::Normal),
            ("normal-7", Priority::Normal),
            ("preview-1", Priority::Preview),
            ("preview-5", Priority::Preview),
        ]
    );
    let stats = q.stats().await;
    assert_eq!((waiting(&stats), stats.free), (0, 1));
    let text = metrics.encode();
    // The previews waited 5 s and 6 s (five and six holders of 1 s before them).
    assert_eq!(
        line(
            &text,
            "xg2g_gpu_queue_wait_seconds_bucket{le=\"4.096\",priority=\"preview\"}"
        ),
        "xg2g_gpu_queue_wait_seconds_bucket{le=\"4.096\",priority=\"preview\"} 0"
    );
    assert_eq!(
        line(
            &text,
            "xg2g_gpu_queue_wait_seconds_bucket{le=\"8.192\",priority=\"preview\"}"
        ),
        "xg2g_gpu_queue_wait_seconds_bucket{le=\"8.192\",priority=\"preview\"} 2"
    );
    assert_eq!(
        line(&text, "xg2g_gpu_queue_active_workers"),
        "xg2g_gpu_queue_active_workers 0"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once_with_the_time_until_a_place_frees() {
    let (q, metrics) = queue(1, 2, Duration::from_secs(30));
    let _holder = q.acquire(Request::Preview).await.unwrap();
    let _first = enqueue(&q, session(1, SD));
    assert_eq!(waiting(&q.stats().await), 1);
    tokio::time::advance(Duration::from_millis(10_500)).await;
    let _second = enqueue(&q, session(2, SD));
    let started = Instant::now();
    let refused = q.acquire(session(3, SD)).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    // The first waiter's deadline is 19.5 s away: whole seconds, rounded up.
    assert_eq!(
        refused,
        QueueError::Full {
            retry_after: Duration::from_secs(20)
        }
    );
    assert_eq!(refused.code(), "encoder-queue-full");
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(20)));
    // A preview is refused as well: a full queue is full for everyone.
    assert!(matches!(
        q.acquire(Request::Preview).await,
        Err(QueueError::Full { .. })
    ));
    assert_eq!(waiting(&q.stats().await), 2);
    assert_eq!(
        line(&metrics.encode(), "xg2g_gpu_queue_rejections_total{reason=\"full\"}"),
        "xg2g_gpu_queue_rejections_total{reason=\"full\"} 2"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_past_max_wait_is_refused_and_leaves() {
    let (q, metrics) = queue(1, 10, Duration::from_secs(5));
    let holder = q.acquire(session(1, SD)).await.unwrap();
    let started = Instant::now();
    let refused = q.acquire(session(2, HD)).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(
        refused,
        QueueError::Timeout {
            waited: Duration::from_secs(5)
        }
    );
    assert_eq!(refused.code(), "encoder-queue-timeout");
    assert_eq!(waiting(&q.stats().await), 0);
    assert_eq!(
        line(&metrics.encode(), "xg2g_gpu_queue_rejections_total{reason=\"timeout\"}"),
        "xg2g_gpu_queue_rejections_total{reason=\"timeout\"} 1"
    );
    // The slot that was busy all along is still the only one, and it comes back.
    drop(holder);
    assert_eq!(q.stats().await.free, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue_at_once() {
    let (q, metrics) = queue(1, 1, Duration::from_secs(30));
    let holder = q.acquire(session(1, SD)).await.unwrap();
    let gone = enqueue(&q, session(2, SD));
    assert_eq!(waiting(&q.stats().await), 1);
    // Its place is taken: the queue (size 1) is full.
    assert!(matches!(q.acquire(session(3, SD)).await, Err(QueueError::Full { .. })));
    drop(gone);
    let stats = q.stats().await;
    assert_eq!(waiting(&stats), 0);
    // Its place is free again, and the slot does not go to the one who left.
    let next = enqueue(&q, session(3, SD));
    drop(holder);
    let permit = next.await.unwrap();
    assert_eq!(permit.priority(), Priority::Normal);
    assert_eq!(
        line(
            &metrics.encode(),
            "xg2g_gpu_queue_rejections_total{reason=\"cancelled\"}"
        ),
        "xg2g_gpu_queue_rejections_total{reason=\"cancelled\"} 1"
    );
}

#[tokio::test(start_paused = true)]
async fn permits_return_when_dropped() {
    let (q, metrics) = queue(2, 10, Duration::from_secs(30));
    let a = q.acquire(session(1, SD)).await.unwrap();
    let b = q.acquire(session(2, HD)).await.unwrap();
    assert_eq!(q.stats().await.free, 0);
    assert_eq!(
        line(&metrics.encode(), "xg2g_gpu_queue_active_workers"),
        "xg2g_gpu_queue_active_workers 2"
    );
    drop(a);
    assert_eq!(q.stats().await.free, 1);
    drop(b);
    assert_eq!(q.stats().await.free, 2);
    assert_eq!(
        line(&metrics.encode(), "xg2g_gpu_queue_active_workers"),
        "xg2g_gpu_queue_active_workers 0"
    );
}

#[tokio::test(start_paused = true)]
async fn active_lasts_the_window_after_the_last_use() {
    let (q, _) = queue(1, 10, Duration::from_secs(60));
    let holder = q.acquire(Request::Preview).await.unwrap();
    let watching = q.watching(ip(1), SD);
    tokio::time::advance(Duration::from_secs(3600)).await;
    // Still watching an hour later (a profile switch opens the new stream first).
    let waiter = enqueue(&q, session(1, SD));
    assert_eq!(q.stats().await.waiting, [0, 0, 1]);
    drop(waiter);
    drop(watching);
    // (The task has seen the close once it answers.)
    q.stats().await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let waiter = enqueue(&q, session(1, SD));
    assert_eq!(q.stats().await.waiting, [0, 0, 1], "a reconnect within the window");
    drop(waiter);
    tokio::time::advance(Duration::from_secs(1)).await;
    let waiter = enqueue(&q, session(1, SD));
    assert_eq!(q.stats().await.waiting, [0, 1, 0], "past the window: a new viewer");
    drop(waiter);
    drop(holder);
}

#[tokio::test(start_paused = true)]
async fn no_slot_is_lost_after_a_thousand_random_cancellations() {
    const WORKERS: usize = 3;
    let (q, metrics) = queue(WORKERS as u32, 64, Duration::from_secs(3600));
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut waiters: Vec<tokio::task::JoinHandle<Result<EncoderPermit, QueueError>>> = Vec::new();
    let mut held: Vec<EncoderPermit> = Vec::new();
    let mut cancelled = 0;
    while cancelled < 1000 {
        match rng.random_range(0..10) {
            // Ask for a slot, or for several (a ladder), at a random priority.
            0..=3 => {
                let request = match rng.random_range(0..3) {
                    0 => Request::Preview,
                    1 => session(rng.random_range(1..20), SD),
                    _ => {
                        let client = rng.random_range(1..20);
                        q.touch(ip(client), HD);
                        session(client, HD)
                    }
                };
                let slots = if rng.random_bool(0.75) {
                    1
                } else {
                    rng.random_range(2..=WORKERS as u32)
                };
                let q = q.clone();
                waiters.push(tokio::spawn(async move { q.acquire_many(request, slots).await }));
            }
            // A client goes away while waiting (or just as its slot arrives).
            4..=7 if !waiters.is_empty() => {
                let waiter = waiters.swap_remove(rng.random_range(0..waiters.len()));
                waiter.abort();
                if let Ok(Ok(permit)) = waiter.await {
                    held.push(permit);
                }
                cancelled += 1;
            }
            // A session ends.
            8 if !held.is_empty() => drop(held.swap_remove(rng.random_range(0..held.len()))),
            _ => {}
        }
        // Collect whoever was served; let the task run a little.
        let mut still = Vec::new();
        for waiter in waiters.drain(..) {
            if waiter.is_finished() {
                match waiter.await.unwrap() {
                    Ok(permit) => held.push(permit),
                    // The queue (64) may have been full.
                    Err(error) => assert!(matches!(error, QueueError::Full { .. }), "{error}"),
                }
            } else {
                still.push(waiter);
            }
        }
        waiters = still;
        let in_use: usize = held.iter().map(|p| p.slots() as usize).sum();
        assert!(in_use <= WORKERS, "{in_use} slots held");
        tokio::task::yield_now().await;
    }
    for waiter in waiters.drain(..) {
        waiter.abort();
        if let Ok(Ok(permit)) = waiter.await {
            held.push(permit);
        }
    }
    assert!(held.iter().map(|p| p.slots() as usize).sum::<usize>() <= WORKERS);
    held.clear();
    // The cancellations hit waiters in line, not just finished requests.
    let text = metrics.encode();
    let cancelled_in_line: u64 = line(&text, "xg2g_gpu_queue_rejections_total{reason=\"cancelled\"}")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        cancelled_in_line > 500,
        "{cancelled_in_line} of 1000 cancellations were in line"
    );
    let stats = q.stats().await;
    assert_eq!(waiting(&stats), 0, "nobody left in line");
    assert_eq!(stats.free, WORKERS, "every slot came back");
    assert_eq!(
        line(&metrics.encode(), "xg2g_gpu_queue_active_workers"),
        "xg2g_gpu_queue_active_workers 0"
    );
    // And they are usable: WORKERS grants at once.
    let mut again = Vec::new();
    for client in 0..WORKERS as u8 {
        again.push(q.acquire(session(client, SD)).await.unwrap());
    }
    assert_eq!(q.stats().await.free, 0);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_told_when_the_queue_stops() {
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let q = EncoderQueue::spawn(&config(1, 10, Duration::from_secs(30)), metrics, shutdown.clone());
    let _holder = q.acquire(Request::Preview).await.unwrap();
    let waiter = enqueue(&q, session(1, SD));
    shutdown.cancel();
    assert_eq!(waiter.await.unwrap_err(), QueueError::Stopped);
    assert_eq!(q.acquire(Request::Preview).await.unwrap_err(), QueueError::Stopped);
}

#[tokio::test(start_paused = true)]
async fn a_ladder_behind_busy_slots_gets_all_of_them_together() {
    let (q, metrics) = queue(2, 10, Duration::from_secs(30));
    let a = q.acquire(session(1, SD)).await.unwrap();
    let b = q.acquire(session(2, SD)).await.unwrap();
    assert_eq!(a.slots(), 1);
    let mut ladder = enqueue_many(&q, session(3, HD), 2);
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 2");

    // One slot is not enough: the ladder keeps it and waits for the second.
    drop(a);
    assert!(still_waits(&q, &mut ladder).await);
    let stats = q.stats().await;
    assert_eq!((stats.waiting, stats.free, stats.gathered), ([0, 1, 0], 1, 1));
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 1");

    drop(b);
    let ladder = ladder.await.unwrap();
    assert_eq!((ladder.slots(), ladder.priority()), (2, Priority::Normal));
    let stats = q.stats().await;
    assert_eq!((waiting(&stats), stats.free, stats.gathered), (0, 0, 0));
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 2");

    // Both come back with it.
    drop(ladder);
    assert_eq!(q.stats().await.free, 2);
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 0");
    // And two free at once are taken at once.
    let started = Instant::now();
    let again = q.acquire_many(session(3, HD), 2).await.unwrap();
    assert_eq!((again.slots(), started.elapsed()), (2, Duration::ZERO));
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 2");
}

#[tokio::test(start_paused = true)]
async fn priority_passes_a_ladder_but_a_smaller_request_of_its_priority_does_not() {
    let (q, metrics) = queue(2, 10, Duration::from_secs(30));
    let a = q.acquire(session(1, SD)).await.unwrap();
    let b = q.acquire(session(2, SD)).await.unwrap();
    let mut ladder = enqueue_many(&q, session(3, HD), 2);
    let mut small = enqueue(&q, session(4, SD));
    drop(a);
    assert!(still_waits(&q, &mut ladder).await);
    let stats = q.stats().await;
    assert_eq!((stats.waiting, stats.free, stats.gathered), ([0, 2, 0], 1, 1));

    // One slot is free (gathered for the ladder) and the small request could use it: it must
    // not, or a stream of small requests would keep the ladder waiting for ever.
    assert!(still_waits(&q, &mut small).await);
    // Nor does one that arrives now.
    let mut later = enqueue(&q, session(6, SD));
    assert!(still_waits(&q, &mut later).await);

    // Client 5 watched SD a moment ago: Active, so it goes first and takes the gathered slot.
    q.touch(ip(5), SD);
    let active = enqueue(&q, session(5, SD)).await.unwrap();
    assert_eq!((active.priority(), active.slots()), (Priority::Active, 1));
    let stats = q.stats().await;
    assert_eq!((stats.waiting, stats.free, stats.gathered), ([0, 3, 0], 0, 0));

    // The ladder starts over from the next free slot; still nobody passes it.
    drop(b);
    assert!(still_waits(&q, &mut small).await);
    assert!(still_waits(&q, &mut ladder).await);
    drop(active);
    let ladder = ladder.await.unwrap();
    assert_eq!(ladder.slots(), 2);
    assert!(still_waits(&q, &mut small).await);
    drop(ladder);
    let small = small.await.unwrap();
    let later = later.await.unwrap();
    assert_eq!((small.slots(), later.slots()), (1, 1));
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 2");
    drop((small, later));
    assert_eq!(q.stats().await.free, 2);
}

#[tokio::test(start_paused = true)]
async fn a_head_that_leaves_hands_what_it_gathered_on_and_no_slot_is_lost() {
    let (q, metrics) = queue(3, 10, Duration::from_secs(30));
    let mut held = Vec::new();
    for client in 1..=3 {
        held.push(q.acquire(session(client, SD)).await.unwrap());
    }
    let ladder = enqueue_many(&q, session(4, HD), 3);
    let mut next = enqueue_many(&q, session(5, HD), 2);
    drop(held.pop());
    drop(held.pop());
    assert!(still_waits(&q, &mut next).await);
    let stats = q.stats().await;
    assert_eq!((waiting(&stats), stats.free, stats.gathered), (2, 2, 2));

    // The ladder's client goes away: its two slots go to the next head at once.
    drop(ladder);
    let next = next.await.unwrap();
    assert_eq!(next.slots(), 2);
    let stats = q.stats().await;
    assert_eq!((waiting(&stats), stats.free, stats.gathered), (0, 0, 0));
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 3");
    assert_eq!(
        line(
            &metrics.encode(),
            "xg2g_gpu_queue_rejections_total{reason=\"cancelled\"}"
        ),
        "xg2g_gpu_queue_rejections_total{reason=\"cancelled\"} 1"
    );

    // A head that times out with nobody behind it: what it gathered goes back.
    drop(next);
    let mut lone = enqueue_many(&q, session(6, HD), 3);
    assert!(still_waits(&q, &mut lone).await);
    let stats = q.stats().await;
    assert_eq!((waiting(&stats), stats.free, stats.gathered), (1, 2, 2));
    assert_eq!(
        lone.await.unwrap_err(),
        QueueError::Timeout {
            waited: Duration::from_secs(30)
        }
    );
    let stats = q.stats().await;
    assert_eq!((waiting(&stats), stats.free, stats.gathered), (0, 2, 0));
    drop(held);
    assert_eq!(q.stats().await.free, 3, "every slot came back");
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 0");
    // They are in the semaphore, not in the task's hand: three at once, at once.
    let started = Instant::now();
    let all = q.acquire_many(session(7, HD), 3).await.unwrap();
    assert_eq!((all.slots(), started.elapsed()), (3, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn more_slots_than_workers_are_refused_at_once() {
    let (q, metrics) = queue(2, 10, Duration::from_secs(30));
    let started = Instant::now();
    let refused = q.acquire_many(session(1, HD), 3).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    assert_eq!(refused, QueueError::TooLarge { slots: 3, workers: 2 });
    assert_eq!(refused.code(), "encoder-queue-too-small");
    assert_eq!(refused.retry_after(), None, "asking again does not help");
    assert!(refused.to_string().contains("gpu_queue.workers is 2"), "{refused}");
    let stats = q.stats().await;
    assert_eq!((waiting(&stats), stats.free), (0, 2));
    // As many as there are is fine; none counts as one.
    let all = q.acquire_many(session(1, HD), 2).await.unwrap();
    assert_eq!(all.slots(), 2);
    drop(all);
    assert_eq!(q.acquire_many(Request::Preview, 0).await.unwrap().slots(), 1);
    assert_eq!(active_workers(&metrics), "xg2g_gpu_queue_active_workers 0");
}
