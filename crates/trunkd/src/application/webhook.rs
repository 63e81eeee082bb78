//! The webhook driver of application calls (SPEC §6, docs/sma.md): each
//! call gets one task, owned by the call, that runs the call's
//! [`trunkd_sma::Session`] — the invocations it asks for become signed
//! HTTP POSTs to the SIP media application, the actions in the answers
//! become [`AppAction`]s for the call task, and what the call reports
//! ([`AppEvent`]) goes back into the session.
//!
//! The task never waits on the network in its own loop: an HTTP request
//! and an audio fetch each run as a task of their own whose result comes
//! back as a message, so a slow application or audio server never holds
//! the call's events (a hangup during a fetch is seen at once). Both are
//! bounded in time: requests by the response timeout, fetches by the
//! response timeout too (`[applications] response_timeout_ms`).
//!
//! The task ends when the session is over: every participant left and the
//! application was told (HANGUP delivered, or every endpoint failed).

use crate::deadline::sleep_until;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};
use trunkd_config::{Config, RecordSinkSettings};
use trunkd_core::backoff::Backoff;
use trunkd_core::events::signing::WebhookKey;
use trunkd_core::resources::SipMediaApplication;
use trunkd_sma::action::{Action, BridgeEndpointType, MediaRef, ParseLimits};
use trunkd_sma::session::{
    ActionResult, Input, Invocation, NewCall, Output, Session, SessionConfig, SmaEndpoint,
};
use trunkd_sma::{Direction, Participant, ParticipantStatus, ParticipantTag};

use super::audio::{self, AudioCache, Samples};
use super::{
    channels, ActionData, AppAction, AppCall, AppEvent, BridgeVia, DigitCollection, DriverChannels,
    DriverFactory,
};
use crate::daemon::Shared;
use crate::metrics::{SmaFailureLabels, SmaInvocationLabels, SmaLabel};

/// The managed service's error type for an audio source it cannot use.
const INVALID_AUDIO_SOURCE: &str = "InvalidAudioSource";
/// … and for a parameter it cannot use (a recording destination).
const INVALID_PARAMETER: &str = "InvalidActionParameter";
/// Tries of a recording upload before the file is left on disk for good.
const UPLOAD_TRIES: u32 = 30;

/// Arguments of an UpdateSipMediaApplicationCall.
pub type Arguments = BTreeMap<String, String>;

/// Application calls in progress by transaction id: where an
/// UpdateSipMediaApplicationCall goes (CALL_UPDATE_REQUESTED).
#[derive(Default)]
pub struct SmaCalls {
    calls: Mutex<HashMap<String, (String, mpsc::Sender<Arguments>)>>,
}

/// Why an update was not delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateError {
    /// No call of that application with that transaction id is in progress.
    NotFound,
    /// The call has updates waiting already (at most [`UPDATE_QUEUE`]).
    Busy,
}

/// Updates a call holds before it refuses more (each is an invocation).
pub const UPDATE_QUEUE: usize = 4;

impl SmaCalls {
    /// Hands `arguments` to the call `transaction_id` of `sma_id`.
    pub fn update(
        &self,
        sma_id: &str,
        transaction_id: &str,
        arguments: Arguments,
    ) -> Result<(), UpdateError> {
        let calls = self.calls.lock().map_err(|_| UpdateError::NotFound)?;
        match calls.get(transaction_id) {
            Some((sma, tx)) if sma == sma_id => tx.try_send(arguments).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => UpdateError::Busy,
                mpsc::error::TrySendError::Closed(_) => UpdateError::NotFound,
            }),
            _ => Err(UpdateError::NotFound),
        }
    }

    fn insert(&self, transaction_id: &str, sma_id: &str) -> mpsc::Receiver<Arguments> {
        let (tx, rx) = mpsc::channel(UPDATE_QUEUE);
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(transaction_id.to_owned(), (sma_id.to_owned(), tx));
        }
        rx
    }

    fn remove(&self, transaction_id: &str) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.remove(transaction_id);
        }
    }
}

/// The driver factory the daemon registers: one [`run`] task per call.
pub fn factory(shared: Arc<Shared>) -> DriverFactory {
    let http = reqwest::Client::builder()
        // A redirected POST would lose its body or its signature's
        // meaning: a 3xx is a failed invocation.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("trunkd/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let cache = Arc::new(AudioCache::new());
    // A zero series per configured application from the start, so a
    // dashboard sees SmaActiveCallCount before the first call.
    for sma in shared.config().resources.sip_media_applications() {
        let _ = shared.metrics.sma_active_calls.get_or_create(&SmaLabel {
            sip_media_application_id: sma.id.to_string(),
        });
    }
    Arc::new(move |call: AppCall| {
        let (app, drv) = channels();
        let span = info_span!("sma", transaction_id = %call.transaction_id, sma = %call.sma_id);
        tokio::spawn(run(shared.clone(), http.clone(), cache.clone(), call, drv).instrument(span));
        app
    })
}

/// What a request or fetch task reports back.
enum Done {
    /// The HTTP outcome of an invocation.
    Http(Input),
    /// An action ready to run (its audio fetched), or why it cannot run.
    Prepared(Result<AppAction, (String, String)>),
}

/// The HTTP request in flight.
struct Request {
    task: JoinHandle<()>,
    event_type: &'static str,
}

struct Driver {
    config: Arc<Config>,
    shared: Arc<Shared>,
    http: reqwest::Client,
    cache: Arc<AudioCache>,
    sma_id: String,
    key: Option<WebhookKey>,
    transaction_id: String,
    session: Session,
    done_tx: mpsc::Sender<Done>,
    request: Option<Request>,
    fetch: Option<JoinHandle<()>>,
    actions: mpsc::Sender<AppAction>,
    /// RecordAudio files written so far (the `<n>` of their names).
    recordings: u32,
    /// Where the running RecordAudio's file goes once written, when its
    /// destination is a bucket.
    upload: Option<S3Target>,
    /// The call recording asked for (StartCallRecording not yet answered).
    call_recording_starting: Option<CallRecordingTarget>,
    /// The call recording running.
    call_recording: Option<CallRecordingTarget>,
}

/// Where a call recording is written, and delivered once stopped.
#[derive(Debug, Clone)]
struct CallRecordingTarget {
    /// The bucket's object, when the destination is S3.
    upload: Option<S3Target>,
    /// The destination as ActionData reports it (`CallRecordingDestination`).
    reported: MediaRef,
}

/// An object to write: the sink whose bucket it is, and its key.
#[derive(Debug, Clone)]
struct S3Target {
    sink: RecordSinkSettings,
    key: String,
}

/// The `[[records.sinks]]` entry whose bucket is `bucket`: S3 sources and
/// destinations use its endpoint and credentials.
fn sink_for<'a>(config: &'a Config, bucket: &str) -> Option<&'a RecordSinkSettings> {
    config
        .settings
        .records
        .sinks
        .iter()
        .find(|s| s.bucket == bucket)
}

/// Runs one application call's session until it is over.
pub async fn run(
    shared: Arc<Shared>,
    http: reqwest::Client,
    cache: Arc<AudioCache>,
    call: AppCall,
    drv: DriverChannels,
) {
    let config = shared.config();
    let DriverChannels {
        actions,
        mut events,
    } = drv;
    let Some(sma) = config
        .resources
        .sip_media_application(call.sma_id.as_str())
        .cloned()
    else {
        // Removed by a reload since the call was admitted.
        warn!("the SIP media application is not configured any more; refusing the call");
        let _ = actions
            .send(AppAction::Hangup {
                sip_response_code: 480,
            })
            .await;
        while events.recv().await.is_some() {}
        return;
    };
    let active = shared
        .metrics
        .sma_active_calls
        .get_or_create(&SmaLabel {
            sip_media_application_id: sma.id.to_string(),
        })
        .clone();
    active.inc();
    let now = Instant::now();
    let session = Session::new(
        session_config(&config, &sma),
        new_call(&config, &sma, &call),
        now,
    );
    let (done_tx, mut done_rx) = mpsc::channel(8);
    let mut d = Driver {
        shared: shared.clone(),
        http,
        cache,
        sma_id: sma.id.to_string(),
        key: sma.webhook_secret.clone(),
        transaction_id: call.transaction_id.to_string(),
        session,
        done_tx,
        request: None,
        fetch: None,
        actions,
        recordings: 0,
        upload: None,
        call_recording_starting: None,
        call_recording: None,
        config,
    };
    info!("application call started");
    let mut updates = shared.sma_calls.insert(&d.transaction_id, &d.sma_id);
    let mut events_open = true;
    let mut hung_up = false;
    loop {
        d.drain().await;
        if d.session.is_finished() {
            break;
        }
        let deadline = d.session.poll_timeout();
        tokio::select! {
            ev = events.recv(), if events_open => match ev {
                Some(AppEvent::Hangup { .. }) | None => {
                    events_open = ev.is_some();
                    if !hung_up {
                        hung_up = true;
                        // The call task finished the file before its Hangup.
                        d.deliver_call_recording(None);
                        d.session.handle(Instant::now(), Input::Hangup { participant: ParticipantTag::LegA });
                    }
                    if !events_open {
                        d.drop_fetch();
                    }
                }
                Some(e) => d.on_event(e),
            },
            Some(done) = done_rx.recv() => match done {
                Done::Http(input) => {
                    d.request = None;
                    d.session.handle(Instant::now(), input);
                }
                Done::Prepared(prepared) => {
                    d.fetch = None;
                    match prepared {
                        Ok(action) => {
                            // The call task ends by itself; a closed channel
                            // means it is gone, and its Hangup follows.
                            let _ = d.actions.send(action).await;
                        }
                        Err((error_type, error_message)) => d.action_failed(error_type, error_message),
                    }
                }
            },
            Some(arguments) = updates.recv() => {
                d.session.handle(Instant::now(), Input::UpdateRequested { arguments });
            }
            () = sleep_until(deadline) => d.session.handle_timeout(Instant::now()),
        }
    }
    shared.sma_calls.remove(&d.transaction_id);
    if let Some(r) = d.request.take() {
        r.task.abort();
    }
    d.drop_fetch();
    info!(
        invocations = d.session.last_sequence(),
        "application call over"
    );
    active.dec();
    // Dropping the action sender ends a call still up (it cannot be: the
    // session is over only once every participant left).
}

fn session_config(config: &Config, sma: &SipMediaApplication) -> SessionConfig {
    let apps = &config.settings.applications;
    let endpoints = sma
        .endpoints
        .iter()
        .map(|e| SmaEndpoint {
            url: e.url.clone(),
            priority: e.priority.get(),
        })
        .collect();
    let mut s = SessionConfig::new(endpoints);
    s.response_timeout = apps.response_timeout;
    s.limits = ParseLimits {
        max_actions: apps.max_actions,
        ..ParseLimits::default()
    };
    s
}

fn new_call(config: &Config, sma: &SipMediaApplication, call: &AppCall) -> NewCall {
    NewCall {
        transaction_id: call.transaction_id,
        account_id: config.settings.daemon.account_id.clone(),
        region: sma.aws_region.clone(),
        sma_id: sma.id.clone(),
        // A call trunkd placed answers to no SIP rule.
        rule_id: call.arguments.is_none().then(|| call.rule_id.clone()),
        leg_a: Participant {
            call_id: call.call_id.clone(),
            participant_tag: ParticipantTag::LegA,
            to: call.to_number.clone(),
            from: call.from_number.clone(),
            direction: if call.arguments.is_some() {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            start_time_in_milliseconds: unix_ms(),
            status: ParticipantStatus::Connected,
        },
        arguments: call.arguments.clone().unwrap_or_default(),
    }
}

impl Driver {
    /// Does what the session asks, until it asks nothing more.
    async fn drain(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Invoke(inv) => self.invoke(inv),
                Output::Run(action) => self.run_action(action).await,
                Output::EndCall { sip_response_code } => {
                    info!(
                        code = sip_response_code,
                        "the application cannot run the call; ending it"
                    );
                    self.drop_fetch();
                    let _ = self
                        .actions
                        .send(AppAction::Hangup { sip_response_code })
                        .await;
                }
            }
        }
    }

    fn drop_fetch(&mut self) {
        if let Some(f) = self.fetch.take() {
            f.abort();
        }
    }

    /// What the call reported, into the session.
    fn on_event(&mut self, e: AppEvent) {
        let now = Instant::now();
        match e {
            AppEvent::Answered => self.session.handle(now, Input::Answered),
            AppEvent::Ringing => self.session.handle(now, Input::Ringing),
            AppEvent::ActionSucceeded { action, data } => {
                let mut result = ActionResult::default();
                if action == "StartCallRecording" {
                    if let Some(t) = self.call_recording_starting.take() {
                        result.call_recording_destination = Some(t.reported.clone());
                        self.call_recording = Some(t);
                    }
                }
                match data {
                    ActionData::None => {}
                    ActionData::CallRecording { path, .. } => {
                        self.deliver_call_recording(Some(path));
                    }
                    ActionData::Digits(d) => result.received_digits = Some(d),
                    ActionData::Recording {
                        path, terminator, ..
                    } => {
                        result.recording_destination = Some(match self.upload.take() {
                            Some(target) => {
                                let dest = MediaRef::S3 {
                                    bucket_name: target.sink.bucket.clone(),
                                    key: target.key.clone(),
                                };
                                self.start_upload(path, target);
                                dest
                            }
                            None => MediaRef::File {
                                path: path.display().to_string(),
                            },
                        });
                        result.recording_terminator_used = terminator.map(String::from);
                    }
                }
                self.session.handle(now, Input::ActionSucceeded(result));
            }
            AppEvent::ActionFailed {
                error_type,
                message,
                ..
            } => self.action_failed(error_type.to_owned(), message),
            AppEvent::Digits { digits } => {
                for c in digits.chars() {
                    self.session.handle(now, Input::Digit(c));
                }
            }
            AppEvent::BridgeJoined { call_id, to, from } => self.session.handle(
                now,
                Input::ParticipantJoined(Participant {
                    call_id,
                    participant_tag: ParticipantTag::LegB,
                    to,
                    from,
                    direction: Direction::Outbound,
                    start_time_in_milliseconds: unix_ms(),
                    status: ParticipantStatus::Connected,
                }),
            ),
            AppEvent::BridgeLeft => self.session.handle(
                now,
                Input::Hangup {
                    participant: ParticipantTag::LegB,
                },
            ),
            // Handled by the loop.
            AppEvent::Hangup { .. } => {}
        }
    }

    fn action_failed(&mut self, error_type: String, error_message: String) {
        self.upload = None;
        self.call_recording_starting = None;
        debug!(%error_type, %error_message, "action failed");
        self.shared
            .metrics
            .sma_action_failures
            .get_or_create(&SmaFailureLabels {
                sip_media_application_id: self.sma_id.clone(),
                error_type: error_type.clone(),
            })
            .inc();
        self.session.handle(
            Instant::now(),
            Input::ActionFailed {
                error_type,
                error_message,
            },
        );
    }

    /// POSTs `inv` on a task of its own; a request it supersedes is
    /// dropped (the session gave up on it: a timeout).
    fn invoke(&mut self, inv: Invocation) {
        let metrics_sma = self.sma_id.clone();
        if let Some(old) = self.request.take() {
            if !old.task.is_finished() {
                old.task.abort();
                self.count_invocation(old.event_type, "timeout");
            }
        }
        let event_type = inv.event_type.as_str();
        let http = self.http.clone();
        let key = self.key.clone();
        let msg_id = format!("msg_{}_{}", self.transaction_id, inv.sequence);
        let timeout = self.config.settings.applications.response_timeout;
        let max_body = ParseLimits::default().max_body_bytes as u64;
        let done = self.done_tx.clone();
        let shared = self.shared.clone();
        debug!(
            sequence = inv.sequence,
            event = event_type,
            endpoint = inv.endpoint,
            "invoking the application"
        );
        let task = tokio::spawn(
            async move {
                let started = Instant::now();
                let (input, result) =
                    post(&http, key.as_ref(), &msg_id, &inv, timeout, max_body).await;
                if result != "unreachable" && result != "timeout" {
                    shared
                        .metrics
                        .sma_invocation_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                shared
                    .metrics
                    .sma_invocations
                    .get_or_create(&SmaInvocationLabels {
                        sip_media_application_id: metrics_sma,
                        event_type,
                        result,
                    })
                    .inc();
                let _ = done.send(Done::Http(input)).await;
            }
            .in_current_span(),
        );
        self.request = Some(Request { task, event_type });
    }

    fn count_invocation(&self, event_type: &'static str, result: &'static str) {
        self.shared
            .metrics
            .sma_invocations
            .get_or_create(&SmaInvocationLabels {
                sip_media_application_id: self.sma_id.clone(),
                event_type,
                result,
            })
            .inc();
    }

    /// Turns one of the application's actions into the call's; media
    /// actions get their audio first, on a task of their own.
    async fn run_action(&mut self, action: Action) {
        debug!(action = action.name(), "running");
        let ready = match &action {
            Action::Answer(_) => Ok(AppAction::Answer),
            // The bridged leg only: the caller stays (SPEC §6, CallAndBridge).
            Action::Hangup(h) if h.target.participant_tag == Some(ParticipantTag::LegB) => {
                Ok(AppAction::HangupBridged)
            }
            Action::Hangup(h) => Ok(AppAction::Hangup {
                sip_response_code: match h.sip_response_code {
                    0 => 480,
                    code => code,
                },
            }),
            Action::Pause(p) => Ok(AppAction::Pause {
                duration: Duration::from_millis(p.duration_in_milliseconds),
            }),
            Action::SendDigits(s) => Ok(AppAction::SendDigits {
                digits: s.digits.clone(),
                tone_duration: Duration::from_millis(s.tone_duration_in_milliseconds),
            }),
            Action::RecordAudio(r) => {
                self.record_path(&r.recording_destination)
                    .map(|path| AppAction::RecordAudio {
                        path,
                        max_duration: Duration::from_secs(u64::from(r.duration_in_seconds)),
                        terminators: r.recording_terminators.clone(),
                        silence: r
                            .silence_duration_in_seconds
                            .map(|s| (r.silence_threshold, Duration::from_secs(u64::from(s)))),
                    })
            }
            Action::PlayAudio(_) | Action::PlayAudioAndGetDigits(_) => {
                self.prepare(Job::Build(action));
                return;
            }
            Action::CallAndBridge(b) => {
                let via = match b.endpoints.first() {
                    Some(e) if e.bridge_endpoint_type == BridgeEndpointType::Pstn => {
                        Ok(BridgeVia::Carriers)
                    }
                    Some(e) => super::bridge::resolve(&self.config.resources, e)
                        .map(BridgeVia::Origination)
                        .map_err(|m| (INVALID_PARAMETER.to_owned(), m)),
                    None => Err((
                        INVALID_PARAMETER.to_owned(),
                        "Invalid number of endpoints provided".to_owned(),
                    )),
                };
                let ready = via.map(|via| AppAction::CallAndBridge {
                    to: b
                        .endpoints
                        .first()
                        .map(|e| e.uri.clone())
                        .unwrap_or_default(),
                    caller_id: b.caller_id_number.clone(),
                    timeout: Duration::from_secs(u64::from(b.call_timeout_seconds)),
                    headers: b
                        .sip_headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    via,
                    ringback: None,
                });
                match (ready, b.ringback_tone.clone()) {
                    // The tone is fetched first, like a prompt.
                    (Ok(a), Some(tone)) => {
                        self.prepare(Job::Ringback(a, tone));
                        return;
                    }
                    (ready, _) => ready,
                }
            }
            Action::StartCallRecording(r) => {
                self.call_recording_path(&r.destination)
                    .map(|path| AppAction::StartCallRecording {
                        path,
                        track: r.track,
                    })
            }
            Action::StopCallRecording(_) => Ok(AppAction::StopCallRecording),
            // The session runs ReceiveDigits itself.
            Action::ReceiveDigits(_) => return,
        };
        match ready {
            Ok(a) => {
                let _ = self.actions.send(a).await;
            }
            Err((t, m)) => self.action_failed(t, m),
        }
    }

    /// Where a RecordAudio writes: `<dir>/<transaction id>-<n>.wav`, the
    /// directory being the `File` destination's path or the configured
    /// recording directory. An `S3` destination is written to the
    /// recording directory first, then uploaded (see [`Self::start_upload`])
    /// as `<prefix>/<transaction id>-<n>.wav`.
    fn record_path(&mut self, dest: &Option<MediaRef>) -> Result<PathBuf, (String, String)> {
        let base = config_dir(&self.config);
        self.upload = None;
        let dir = match dest {
            None => self
                .config
                .settings
                .applications
                .recording_directory
                .clone(),
            Some(MediaRef::File { path }) => audio::resolve(&base, path),
            Some(MediaRef::S3 { bucket_name, key }) => {
                let Some(sink) = sink_for(&self.config, bucket_name) else {
                    return Err((
                        INVALID_PARAMETER.to_owned(),
                        format!(
                            "no [[records.sinks]] has the bucket {bucket_name:?}; S3 destinations use a configured sink's"
                        ),
                    ));
                };
                let name = format!("{}-{}.wav", self.transaction_id, self.recordings + 1);
                self.upload = Some(S3Target {
                    sink: sink.clone(),
                    key: object_key(key, &name),
                });
                self.config
                    .settings
                    .applications
                    .recording_directory
                    .clone()
            }
            Some(MediaRef::Url { .. }) => {
                return Err((
                    INVALID_PARAMETER.to_owned(),
                    "URL recording destinations are not supported; use File or S3".to_owned(),
                ))
            }
        };
        self.recordings += 1;
        Ok(dir.join(format!("{}-{}.wav", self.transaction_id, self.recordings)))
    }

    /// Where a call recording writes: `<dir>/<transaction id>-call-<n>.wav`
    /// in the `File` destination's directory, or in the recording
    /// directory before it goes to the bucket as
    /// `<prefix>/<transaction id>-call-<n>.wav`.
    fn call_recording_path(&mut self, dest: &MediaRef) -> Result<PathBuf, (String, String)> {
        let name = format!("{}-call-{}.wav", self.transaction_id, self.recordings + 1);
        let (dir, target) = match dest {
            MediaRef::File { path } => {
                let dir = audio::resolve(&config_dir(&self.config), path);
                let reported = MediaRef::File {
                    path: dir.join(&name).display().to_string(),
                };
                (
                    dir,
                    CallRecordingTarget {
                        upload: None,
                        reported,
                    },
                )
            }
            MediaRef::S3 { bucket_name, key } => {
                let Some(sink) = sink_for(&self.config, bucket_name) else {
                    return Err((
                        INVALID_PARAMETER.to_owned(),
                        format!(
                            "no [[records.sinks]] has the bucket {bucket_name:?}; S3 destinations use a configured sink's"
                        ),
                    ));
                };
                let key = object_key(key, &name);
                (
                    self.config
                        .settings
                        .applications
                        .recording_directory
                        .clone(),
                    CallRecordingTarget {
                        upload: Some(S3Target {
                            sink: sink.clone(),
                            key: key.clone(),
                        }),
                        reported: MediaRef::S3 {
                            bucket_name: bucket_name.clone(),
                            key,
                        },
                    },
                )
            }
            MediaRef::Url { .. } => {
                return Err((
                    INVALID_PARAMETER.to_owned(),
                    "URL recording destinations are not supported; use File or S3".to_owned(),
                ))
            }
        };
        self.recordings += 1;
        self.call_recording_starting = Some(target);
        Ok(dir.join(name))
    }

    /// The running call recording is over (stopped, or the call ended):
    /// uploads its file when its destination is a bucket. `path` is the
    /// file when the stop reported it; at hangup it is the one started.
    fn deliver_call_recording(&mut self, path: Option<PathBuf>) {
        let Some(t) = self.call_recording.take() else {
            return;
        };
        let Some(upload) = t.upload else {
            return;
        };
        let path = path.unwrap_or_else(|| {
            self.config
                .settings
                .applications
                .recording_directory
                .join(upload.key.rsplit('/').next().unwrap_or(&upload.key))
        });
        self.start_upload(path, upload);
    }

    /// Uploads a finished recording on a task of its own, which outlives
    /// the call: a store that is down is retried with backoff (a PUT by
    /// key is idempotent) and never holds the call. The local file is
    /// removed once the bucket has it; after [`UPLOAD_TRIES`] failures it
    /// stays in the recording directory.
    fn start_upload(&self, path: PathBuf, target: S3Target) {
        let records = &self.config.settings.records;
        let backoff = Backoff {
            initial: records.upload_retry_initial,
            max: records.upload_retry_max,
        };
        tokio::spawn(
            async move {
                let S3Target { sink, key } = target;
                let body = match tokio::fs::read(&path).await {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "the recording cannot be read; not uploaded");
                        return;
                    }
                };
                let store = match crate::records::upload::store_for(&sink) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(sink = %sink.id, error = %e, "the sink is unusable; the recording stays on disk");
                        return;
                    }
                };
                for attempt in 1..=UPLOAD_TRIES {
                    let (outcome, error) =
                        crate::records::upload::put(&store, &key, body.clone()).await;
                    if outcome == crate::records::upload::Outcome::Ok {
                        info!(bucket = %sink.bucket, %key, "recording uploaded");
                        let _ = tokio::fs::remove_file(&path).await;
                        return;
                    }
                    debug!(bucket = %sink.bucket, %key, attempt, %error, "recording upload failed; retrying");
                    tokio::time::sleep(backoff.delay(attempt, crate::records::upload::random()))
                        .await;
                }
                warn!(bucket = %sink.bucket, %key, path = %path.display(), "the recording could not be uploaded; it stays on disk");
            }
            .in_current_span(),
        );
    }

    /// Fetches a PlayAudio's or PlayAudioAndGetDigits' audio, then hands
    /// the action back as [`Done::Prepared`].
    fn prepare(&mut self, job: Job) {
        let apps = &self.config.settings.applications;
        let source = Source {
            sinks: self.config.settings.records.sinks.clone(),
            http: self.http.clone(),
            cache: self.cache.clone(),
            base: config_dir(&self.config),
            max_bytes: apps.audio_max_file_bytes,
            cache_bytes: apps.audio_cache_bytes,
            timeout: apps.response_timeout,
        };
        let done = self.done_tx.clone();
        self.drop_fetch();
        self.fetch = Some(tokio::spawn(
            async move {
                let timeout = source.timeout;
                let work = async {
                    match job {
                        Job::Build(action) => build(&source, action).await,
                        Job::Ringback(mut action, tone) => {
                            let samples = source.load(&tone).await?;
                            if let AppAction::CallAndBridge { ringback, .. } = &mut action {
                                *ringback = Some(samples);
                            }
                            Ok(action)
                        }
                    }
                };
                let prepared = match tokio::time::timeout(timeout, work).await {
                    Ok(r) => r,
                    Err(_) => Err((
                        INVALID_AUDIO_SOURCE.to_owned(),
                        format!("the audio could not be fetched within {timeout:?}"),
                    )),
                };
                let _ = done.send(Done::Prepared(prepared)).await;
            }
            .in_current_span(),
        ));
    }
}

/// What a fetch task prepares: an action's prompts, or a CallAndBridge's
/// `RingbackTone`.
enum Job {
    Build(Action),
    Ringback(AppAction, MediaRef),
}

/// Where audio comes from, for one fetch.
struct Source {
    sinks: Vec<RecordSinkSettings>,
    http: reqwest::Client,
    cache: Arc<AudioCache>,
    base: PathBuf,
    max_bytes: u64,
    cache_bytes: u64,
    timeout: Duration,
}

impl Source {
    async fn load(&self, media: &MediaRef) -> Result<Samples, (String, String)> {
        let got = match media {
            MediaRef::File { path } => {
                audio::read_file(audio::resolve(&self.base, path), self.max_bytes).await
            }
            MediaRef::Url { uri } => {
                audio::fetch_url(
                    &self.http,
                    &self.cache,
                    uri,
                    self.max_bytes,
                    self.cache_bytes,
                    self.timeout,
                )
                .await
            }
            MediaRef::S3 { bucket_name, key } => {
                let Some(sink) = self.sinks.iter().find(|s| &s.bucket == bucket_name) else {
                    return Err((
                        INVALID_AUDIO_SOURCE.to_owned(),
                        format!(
                            "no [[records.sinks]] has the bucket {bucket_name:?}; S3 sources use a configured sink's"
                        ),
                    ));
                };
                audio::fetch_s3(sink, &self.cache, key, self.max_bytes, self.cache_bytes).await
            }
        };
        got.map_err(|e| (INVALID_AUDIO_SOURCE.to_owned(), e.to_string()))
    }
}

async fn build(source: &Source, action: Action) -> Result<AppAction, (String, String)> {
    match action {
        Action::PlayAudio(p) => Ok(AppAction::PlayAudio {
            samples: source.load(&p.audio_source).await?,
            repeat: p.repeat,
            terminators: p.playback_terminators,
        }),
        Action::PlayAudioAndGetDigits(p) => {
            let samples = source.load(&p.audio_source).await?;
            let failure_samples = match &p.failure_audio_source {
                Some(f) => Some(source.load(f).await?),
                None => None,
            };
            Ok(AppAction::PlayAudioAndGetDigits {
                samples,
                failure_samples,
                attempts: p.repeat,
                digits: DigitCollection {
                    min_digits: p.min_number_of_digits as usize,
                    max_digits: p.max_number_of_digits as usize,
                    terminators: p.terminator_digits,
                    timeout: Duration::from_millis(p.in_between_digits_duration_in_milliseconds),
                },
                regex: p.input_digits_regex,
            })
        }
        other => Err((
            "SystemException".to_owned(),
            format!("{} has no audio to fetch", other.name()),
        )),
    }
}

/// The key of a recording `name` under a destination's prefix: the prefix
/// is a folder (a `/` is added when it has none), as a `File` path is a
/// directory.
fn object_key(prefix: &str, name: &str) -> String {
    let prefix = prefix.trim_start_matches('/');
    if prefix.is_empty() || prefix.ends_with('/') {
        format!("{prefix}{name}")
    } else {
        format!("{prefix}/{name}")
    }
}

/// The configuration file's directory: `File` paths are relative to it.
fn config_dir(config: &Config) -> PathBuf {
    config
        .path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
}

/// POSTs one invocation, signed (Standard Webhooks) when the SMA has a
/// secret: the session's answer to it, and the metric's result label.
async fn post(
    http: &reqwest::Client,
    key: Option<&WebhookKey>,
    msg_id: &str,
    inv: &Invocation,
    timeout: Duration,
    max_body: u64,
) -> (Input, &'static str) {
    let id = inv.id;
    let ts = unix_ms() / 1000;
    let body = inv.body.as_bytes().to_vec();
    let mut req = http
        .post(&inv.url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", ts.to_string());
    if let Some(k) = key {
        req = req.header("webhook-signature", k.sign(msg_id, ts, &body));
    }
    let mut resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            let result = if e.is_timeout() {
                "timeout"
            } else {
                "unreachable"
            };
            // Without the URL: it may carry a token in its query.
            debug!(error = %e.without_url(), "invocation failed");
            return (Input::Unreachable { id }, result);
        }
    };
    let status = resp.status().as_u16();
    let result = match status {
        200..=299 => "ok",
        400..=499 => "http_4xx",
        500..=599 => "http_5xx",
        _ => "http_other",
    };
    // Read one byte past the limit: the session reports a body too large.
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                if body.len() as u64 > max_body {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                debug!(error = %e.without_url(), "invocation answer cut short");
                return (Input::Unreachable { id }, "unreachable");
            }
        }
    }
    (Input::Response { id, status, body }, result)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    //! `post` against a one-shot HTTP server on 127.0.0.1.

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use trunkd_sma::session::RequestId;
    use trunkd_sma::InvocationEventType;

    use super::*;

    /// Serves one request with `status` and a body of `body_len` bytes;
    /// returns the request's head and body.
    async fn one_shot(
        status: u16,
        body_len: usize,
    ) -> (String, tokio::task::JoinHandle<(String, Vec<u8>)>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sma", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let (head, body) = loop {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, _)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let start = head.len() + 4;
                    if buf.len() >= start + len {
                        break (head.to_owned(), buf[start..start + len].to_vec());
                    }
                }
            };
            let answer = vec![b'x'; body_len];
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {body_len}\r\nconnection: close\r\n\r\n"
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            let _ = s.write_all(&answer).await;
            (head, body)
        });
        (url, task)
    }

    fn invocation(url: String) -> Invocation {
        Invocation {
            id: RequestId(7),
            endpoint: 0,
            url,
            sequence: 3,
            event_type: InvocationEventType::Hangup,
            body: r#"{"SchemaVersion":"1.0"}"#.to_owned(),
        }
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn a_recording_key_is_its_name_in_the_prefix_folder() {
        assert_eq!(object_key("", "t-1.wav"), "t-1.wav");
        assert_eq!(object_key("messages", "t-1.wav"), "messages/t-1.wav");
        assert_eq!(object_key("a/b/", "t-1.wav"), "a/b/t-1.wav");
        assert_eq!(object_key("/a", "t-1.wav"), "a/t-1.wav");
    }

    #[tokio::test]
    async fn an_invocation_is_signed_and_a_long_answer_is_cut_one_byte_past_the_limit() {
        let key = WebhookKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (url, server) = one_shot(200, 5000).await;
        let http = reqwest::Client::new();
        let (input, result) = post(
            &http,
            Some(&key),
            "msg_t_3",
            &invocation(url),
            Duration::from_secs(5),
            1000,
        )
        .await;
        assert_eq!(result, "ok");
        match input {
            Input::Response { id, status, body } => {
                assert_eq!((id, status), (RequestId(7), 200));
                assert!(body.len() > 1000 && body.len() <= 5000, "{}", body.len());
            }
            other => panic!("{other:?}"),
        }
        let (head, body) = server.await.unwrap();
        assert!(head.starts_with("POST /sma HTTP/1.1"), "{head}");
        assert_eq!(body, br#"{"SchemaVersion":"1.0"}"#);
        assert_eq!(header(&head, "content-type"), Some("application/json"));
        assert_eq!(header(&head, "webhook-id"), Some("msg_t_3"));
        let ts: u64 = header(&head, "webhook-timestamp").unwrap().parse().unwrap();
        let sig = header(&head, "webhook-signature").unwrap();
        assert!(key.verify("msg_t_3", ts, &body, sig), "{sig}");
    }

    #[tokio::test]
    async fn statuses_and_an_unsigned_request_are_classified() {
        let http = reqwest::Client::new();
        for (status, label) in [(500, "http_5xx"), (404, "http_4xx"), (302, "http_other")] {
            let (url, server) = one_shot(status, 2).await;
            let (input, result) = post(
                &http,
                None,
                "m",
                &invocation(url),
                Duration::from_secs(5),
                1000,
            )
            .await;
            assert_eq!(result, label);
            assert!(matches!(input, Input::Response { status: s, .. } if s == status));
            let (head, _) = server.await.unwrap();
            assert_eq!(header(&head, "webhook-signature"), None);
            assert_eq!(header(&head, "webhook-id"), Some("m"));
        }
        // Nobody listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (input, result) = post(
            &http,
            None,
            "m",
            &invocation(format!("http://127.0.0.1:{port}/")),
            Duration::from_secs(5),
            1000,
        )
        .await;
        assert_eq!(result, "unreachable");
        assert_eq!(input, Input::Unreachable { id: RequestId(7) });
    }
}
