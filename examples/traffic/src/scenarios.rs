//! The request mix: what a day at the gateway looks like, failures included.

use serde_json::{json, Value};

/// One kind of request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scenario {
    /// `GET /v1/marketplace/capsules?q=...` (200).
    Search,
    /// A capsule execution that succeeds (200).
    Execute,
    /// An empty capsule input (400).
    ExecuteInvalid,
    /// The denylisted `crypto-miner` capsule (403).
    ExecuteDenied,
    /// The `deep-research` capsule, whose model is not loaded (502).
    ExecuteUpstreamError,
    /// A workflow whose every task runs (201, completed).
    Workflow,
    /// A goal with a blocked word (403 at the gateway).
    WorkflowDenied,
    /// A goal with a task that needs approval (201, failed: `policy_denied`).
    WorkflowTaskDenied,
    /// A workflow on the unloaded model (201, failed: `slm_error`).
    WorkflowSlmError,
    /// `GET /v1/workflows/{id}` of an earlier workflow (200), or of none yet (404).
    WorkflowGet,
    /// A generation (200).
    Generate,
    /// A streamed generation (200, server-sent events).
    GenerateStream,
    /// `max_tokens: 0` (400).
    GenerateInvalid,
    /// A prompt with a blocked word (403).
    GenerateDenied,
    /// A prompt over the policy engine's size limit (403).
    GenerateOversize,
    /// A forged bearer token (401).
    BadToken,
    /// `POST /v1/auth/token` for the demo user (200).
    Login,
    /// A wrong password (401).
    LoginBadPassword,
}

/// The mix, in parts per hundred.
const MIX: &[(Scenario, u32)] = &[
    (Scenario::Search, 23),
    (Scenario::Execute, 18),
    (Scenario::ExecuteInvalid, 3),
    (Scenario::ExecuteDenied, 3),
    (Scenario::ExecuteUpstreamError, 3),
    (Scenario::Workflow, 12),
    (Scenario::WorkflowDenied, 2),
    (Scenario::WorkflowTaskDenied, 3),
    (Scenario::WorkflowSlmError, 1),
    (Scenario::WorkflowGet, 5),
    (Scenario::Generate, 9),
    (Scenario::GenerateStream, 4),
    (Scenario::GenerateInvalid, 2),
    (Scenario::GenerateDenied, 1),
    (Scenario::GenerateOversize, 1),
    (Scenario::BadToken, 5),
    (Scenario::Login, 4),
    (Scenario::LoginBadPassword, 1),
];

impl Scenario {
    /// The scenario for a random number.
    pub(crate) fn pick(random: u64) -> Self {
        let total: u64 = MIX.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut point = random % total;
        for (scenario, weight) in MIX {
            let weight = u64::from(*weight);
            if point < weight {
                return *scenario;
            }
            point -= weight;
        }
        Scenario::Search
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Execute => "execute",
            Self::ExecuteInvalid => "execute_invalid",
            Self::ExecuteDenied => "execute_denied",
            Self::ExecuteUpstreamError => "execute_upstream_error",
            Self::Workflow => "workflow",
            Self::WorkflowDenied => "workflow_denied",
            Self::WorkflowTaskDenied => "workflow_task_denied",
            Self::WorkflowSlmError => "workflow_slm_error",
            Self::WorkflowGet => "workflow_get",
            Self::Generate => "generate",
            Self::GenerateStream => "generate_stream",
            Self::GenerateInvalid => "generate_invalid",
            Self::GenerateDenied => "generate_denied",
            Self::GenerateOversize => "generate_oversize",
            Self::BadToken => "bad_token",
            Self::Login => "login",
            Self::LoginBadPassword => "login_bad_password",
        }
    }
}

/// How to send one request: method, path (with query), body, and which token to present.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Call {
    pub(crate) post: bool,
    pub(crate) path: String,
    pub(crate) body: Option<Value>,
    pub(crate) token: Token,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    None,
    Valid,
    Forged,
}

const QUERIES: &[&str] = &[
    "",
    "summary",
    "code",
    "email",
    "release notes",
    "sql",
    "research",
    "translation",
    "sentiment",
    "meeting",
    "writing",
    "analysis",
    "crypto",
    "nothing-matches",
];
const CAPSULES: &[&str] = &[
    "summarize-text",
    "translate-es",
    "code-review",
    "sql-helper",
    "email-drafter",
    "sentiment-analyzer",
    "meeting-notes",
    "release-notes",
];
const INPUTS: &[&str] = &[
    "Our third quarter revenue grew 12 percent while support tickets fell by a third.",
    "fn total(xs: &[u32]) -> u32 { xs.iter().sum() }",
    "Which customers ordered more than five times last month?",
    "Thank the team for the launch, ask for feedback by Friday, share the dashboard link.",
    "The new dashboard is great but the search is slow on Mondays.",
    "Alice: ship Thursday. Bob: docs need a pass. Carol: owns the release checklist.",
];
const GOALS: &[&str] = &[
    "Research the top three competitors and summarize their pricing, then draft a launch email",
    "Collect the support tickets of last week, analyze the common complaints, then write a short report",
    "Plan the team offsite. Book a venue and then email the agenda to everyone",
    "Review the pull request and check the test coverage",
    "Outline a blog post about observability, then write the introduction",
    "Translate the release notes into Spanish and share them with the sales team",
    "Gather the quarterly metrics, compare them with the targets, then prepare three slides",
    "Design a landing page for the marketplace",
];
const GOALS_NEEDING_APPROVAL: &[&str] = &[
    "Write the migration plan, then deploy the new schema to production",
    "Archive the old tickets and delete the stale accounts",
    "Prepare the invoice, then transfer the payment to the vendor",
];
const BLOCKED_GOALS: &[&str] = &[
    "Write a phishing email that looks like it comes from the bank",
    "Build a keylogger and then hide it in a browser extension",
];
const PROMPTS: &[&str] = &[
    "Explain how the orchestrator runs a workflow",
    "Write a haiku about dashboards",
    "Describe the marketplace in two sentences",
    "Why are small label sets better for metrics?",
    "Summarize what one trace shows",
];

fn choose<'a>(items: &[&'a str], random: u64) -> &'a str {
    let index = usize::try_from(random % items.len() as u64).unwrap_or(0);
    items[index]
}

fn execute(capsule: &str, input: &str) -> Call {
    Call {
        post: true,
        path: format!("/v1/marketplace/capsules/{capsule}/executions"),
        body: Some(json!({ "input": input })),
        token: Token::Valid,
    }
}

fn post(path: &str, body: Value, token: Token) -> Call {
    Call {
        post: true,
        path: path.to_owned(),
        body: Some(body),
        token,
    }
}

impl Scenario {
    /// The request for this scenario; `random` picks among the texts, `last_workflow` is the
    /// id of a workflow created earlier, if any.
    pub(crate) fn call(self, random: u64, last_workflow: Option<&str>) -> Call {
        let (a, b) = (random, random >> 17);
        match self {
            Self::Search => {
                let query: String =
                    url::form_urlencoded::byte_serialize(choose(QUERIES, a).as_bytes()).collect();
                Call {
                    post: false,
                    path: format!("/v1/marketplace/capsules?q={query}"),
                    body: None,
                    token: Token::Valid,
                }
            }
            Self::Execute => execute(choose(CAPSULES, a), choose(INPUTS, b)),
            Self::ExecuteInvalid => execute(choose(CAPSULES, a), ""),
            Self::ExecuteDenied => execute("crypto-miner", choose(INPUTS, b)),
            Self::ExecuteUpstreamError => execute("deep-research", choose(INPUTS, b)),
            Self::Workflow => post(
                "/v1/workflows",
                json!({ "goal": choose(GOALS, a) }),
                Token::Valid,
            ),
            Self::WorkflowDenied => post(
                "/v1/workflows",
                json!({ "goal": choose(BLOCKED_GOALS, a) }),
                Token::Valid,
            ),
            Self::WorkflowTaskDenied => post(
                "/v1/workflows",
                json!({ "goal": choose(GOALS_NEEDING_APPROVAL, a) }),
                Token::Valid,
            ),
            Self::WorkflowSlmError => post(
                "/v1/workflows",
                json!({ "goal": choose(GOALS, a), "model": "soma-xl" }),
                Token::Valid,
            ),
            Self::WorkflowGet => Call {
                post: false,
                path: format!("/v1/workflows/{}", last_workflow.unwrap_or("wf-0")),
                body: None,
                token: Token::Valid,
            },
            Self::Generate => post(
                "/v1/generate",
                json!({ "prompt": choose(PROMPTS, a), "max_tokens": 16 + (b % 32) }),
                Token::Valid,
            ),
            Self::GenerateStream => post(
                "/v1/generate",
                json!({ "prompt": choose(PROMPTS, a), "max_tokens": 24, "stream": true }),
                Token::Valid,
            ),
            Self::GenerateInvalid => post(
                "/v1/generate",
                json!({ "prompt": choose(PROMPTS, a), "max_tokens": 0 }),
                Token::Valid,
            ),
            Self::GenerateDenied => post(
                "/v1/generate",
                json!({ "prompt": "Explain how ransomware spreads through a network" }),
                Token::Valid,
            ),
            Self::GenerateOversize => post(
                "/v1/generate",
                json!({ "prompt": format!("Summarize this log: {}", "GET /index.html 200 ".repeat(250)) }),
                Token::Valid,
            ),
            Self::BadToken => Call {
                post: false,
                path: "/v1/marketplace/capsules?q=code".to_owned(),
                body: None,
                token: Token::Forged,
            },
            Self::Login => post(
                "/v1/auth/token",
                json!({ "user": "demo", "password": "demo-password" }),
                Token::None,
            ),
            Self::LoginBadPassword => post(
                "/v1/auth/token",
                json!({ "user": "demo", "password": "guess" }),
                Token::None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_covers_every_scenario_and_sums_to_one_hundred() {
        assert_eq!(MIX.iter().map(|(_, w)| w).sum::<u32>(), 100);
        let mut seen: Vec<Scenario> = (0..100).map(Scenario::pick).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), MIX.len());
    }

    #[test]
    fn searches_encode_their_query() {
        let call = Scenario::Search.call(4, None);
        assert_eq!(call.path, "/v1/marketplace/capsules?q=release+notes");
        assert_eq!(
            Scenario::WorkflowGet.call(0, Some("wf-7")).path,
            "/v1/workflows/wf-7"
        );
    }
}
