//! Workflows and their in-memory store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::decompose::{PlannedTask, TaskKind};

/// How many workflows the store keeps; the oldest are forgotten first.
const CAPACITY: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WorkflowStatus {
    Running,
    Completed,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskStatus {
    Pending,
    Done,
    Denied,
    Failed,
    Skipped,
}

/// Why a workflow failed: the `reason` label of `kamachiq_workflows_failed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureReason {
    /// The policy engine denied a task.
    PolicyDenied,
    /// The policy engine could not be asked, or could not evaluate a task.
    PolicyError,
    /// The SLM service failed to generate a task's output.
    SlmError,
}

impl FailureReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::PolicyDenied => "policy_denied",
            Self::PolicyError => "policy_error",
            Self::SlmError => "slm_error",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Task {
    pub(crate) index: usize,
    pub(crate) description: String,
    pub(crate) kind: TaskKind,
    pub(crate) depends_on: Vec<usize>,
    pub(crate) fingerprint: String,
    pub(crate) status: TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Workflow {
    pub(crate) id: String,
    pub(crate) subject: String,
    pub(crate) goal: String,
    pub(crate) status: WorkflowStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) failure_reason: Option<FailureReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) tasks: Vec<Task>,
}

impl Workflow {
    pub(crate) fn new(id: String, subject: String, goal: String, plan: Vec<PlannedTask>) -> Self {
        let tasks = plan
            .into_iter()
            .enumerate()
            .map(|(index, planned)| Task {
                index,
                description: planned.description,
                kind: planned.kind,
                depends_on: planned.depends_on,
                fingerprint: planned.fingerprint,
                status: TaskStatus::Pending,
                output: None,
                error: None,
            })
            .collect();
        Self {
            id,
            subject,
            goal,
            status: WorkflowStatus::Running,
            failure_reason: None,
            error: None,
            tasks,
        }
    }

    /// Marks the workflow failed at task `index`; later tasks are skipped.
    pub(crate) fn fail(
        &mut self,
        index: usize,
        task_status: TaskStatus,
        reason: FailureReason,
        error: String,
    ) {
        self.error = Some(format!("task {index}: {error}"));
        self.tasks[index].status = task_status;
        self.tasks[index].error = Some(error);
        for task in &mut self.tasks[index + 1..] {
            task.status = TaskStatus::Skipped;
        }
        self.status = WorkflowStatus::Failed;
        self.failure_reason = Some(reason);
    }
}

/// Workflows by id, the most recent [`CAPACITY`] of them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Store {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    order: VecDeque<String>,
    by_id: HashMap<String, Workflow>,
}

impl Store {
    /// A fresh id, `wf-<n>`.
    pub(crate) fn next_id(&self) -> String {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.next_id += 1;
        format!("wf-{}", inner.next_id)
    }

    /// Inserts or replaces a workflow.
    pub(crate) fn put(&self, workflow: &Workflow) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.by_id.contains_key(&workflow.id) {
            inner.order.push_back(workflow.id.clone());
            if inner.order.len() > CAPACITY {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.by_id.remove(&oldest);
                }
            }
        }
        inner.by_id.insert(workflow.id.clone(), workflow.clone());
    }

    pub(crate) fn get(&self, id: &str) -> Option<Workflow> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.by_id.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_forgets_the_oldest_beyond_its_capacity() {
        let store = Store::default();
        let first = store.next_id();
        store.put(&Workflow::new(
            first.clone(),
            "demo".into(),
            "g".into(),
            vec![],
        ));
        for _ in 0..CAPACITY {
            let id = store.next_id();
            store.put(&Workflow::new(id, "demo".into(), "g".into(), vec![]));
        }
        assert!(store.get(&first).is_none());
        assert!(store.get(&format!("wf-{}", CAPACITY + 1)).is_some());
    }
}
