//! A word-level Markov chain over a built-in corpus. The same prompt and length always give the
//! same text: the random walk is seeded with a hash of the prompt.

use std::collections::HashMap;

/// The corpus: a few paragraphs in the platform's own words.
const CORPUS: &str = "\
The agent reads the goal and splits it into small tasks. Each task runs on its own and reports \
its status to the orchestrator. The orchestrator asks the policy engine before every task, and \
the policy engine answers with a rule and a reason. A denied task stops the workflow and the \
reason is kept for the user. An allowed task goes to the language model, which writes a short \
answer for the task. The answer is stored with the task and the workflow moves on to the next \
step. When every task is done the workflow is complete and the user sees the results. \
The marketplace lists capsules that other teams publish. A capsule is a small prompt with a \
price, a model and a purpose. Users search the marketplace, pick a capsule and run it on their \
own input. Every run is checked by the policy engine and billed when it succeeds. A capsule \
that fails upstream is not billed and the failure is counted for its owner. \
Good services explain what they do. They measure every request, they keep their labels small \
and they send one trace for one user request. A trace shows the gateway, the orchestrator, the \
policy engine and the model in one picture, so the slow step is easy to find. The metrics show \
the rate, the errors and the duration of each service, and the dashboards turn them into \
answers. When a service is slow the team reads the trace, finds the step and fixes it. \
Short answers are better than long ones. Clear plans are better than clever ones. A small model \
that answers quickly is often enough for a small task, and a large model waits for the hard \
ones.";

/// The transition table of the corpus.
#[derive(Debug)]
pub(crate) struct Markov {
    /// Words that start a sentence.
    starts: Vec<&'static str>,
    /// For each word, the words that follow it in the corpus (with repeats: more frequent
    /// successors are more likely).
    next: HashMap<&'static str, Vec<&'static str>>,
    /// Normalized word (lowercase letters and digits) to a corpus word, to start from the prompt.
    by_key: HashMap<String, &'static str>,
}

fn normalize(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// FNV-1a: a stable, dependency-free seed from the prompt.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Markov {
    pub(crate) fn builtin() -> Self {
        let words: Vec<&'static str> = CORPUS.split_whitespace().collect();
        let mut next: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
        let mut by_key = HashMap::new();
        let mut starts = vec![words[0]];
        for pair in words.windows(2) {
            next.entry(pair[0]).or_default().push(pair[1]);
            if pair[0].ends_with('.') {
                starts.push(pair[1]);
            }
        }
        for word in &words {
            by_key.entry(normalize(word)).or_insert(*word);
        }
        Self {
            starts,
            next,
            by_key,
        }
    }

    /// The words generated for `prompt`, at most `max_tokens` of them; lazily, so a stream can
    /// pace them.
    pub(crate) fn generate<'a>(&'a self, prompt: &str, max_tokens: usize) -> Generation<'a> {
        let mut rng = SplitMix64(fnv1a(prompt));
        // Continue from the last prompt word the corpus knows, else from a sentence start.
        let current = prompt
            .split_whitespace()
            .rev()
            .find_map(|w| self.by_key.get(&normalize(w)).copied())
            .unwrap_or_else(|| self.starts[rng.below(self.starts.len())]);
        Generation {
            markov: self,
            rng,
            current,
            remaining: max_tokens,
        }
    }
}

/// The words of one generation (see [`Markov::generate`]).
#[derive(Debug)]
pub(crate) struct Generation<'a> {
    markov: &'a Markov,
    rng: SplitMix64,
    current: &'static str,
    remaining: usize,
}

impl Iterator for Generation<'_> {
    type Item = &'static str;

    fn next(&mut self) -> Option<&'static str> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let word = match self.markov.next.get(self.current) {
            Some(successors) => successors[self.rng.below(successors.len())],
            None => self.markov.starts[self.rng.below(self.markov.starts.len())],
        };
        self.current = word;
        Some(word)
    }
}

/// `SplitMix64`, a small deterministic generator.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        // n is small; the modulo bias is irrelevant here.
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_prompt_gives_the_same_text() {
        let markov = Markov::builtin();
        let a: Vec<_> = markov.generate("Summarize the workflow", 20).collect();
        let b: Vec<_> = markov.generate("Summarize the workflow", 20).collect();
        let c: Vec<_> = markov.generate("Describe the marketplace", 20).collect();
        assert_eq!(a.len(), 20);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_word_comes_from_the_corpus_and_follows_its_predecessor() {
        let markov = Markov::builtin();
        let words: Vec<_> = markov.generate("policy", 50).collect();
        for pair in words.windows(2) {
            let successors = markov.next.get(pair[0]);
            assert!(
                successors.is_none_or(|s| s.contains(&pair[1])),
                "{} -> {}",
                pair[0],
                pair[1]
            );
        }
    }
}
