//! Normalisation and tokenisation: lowercase ASCII words with stop words
//! removed and common occupation abbreviations expanded.

use std::sync::LazyLock;

/// Words that carry no occupation information in survey answers.
const STOP_WORDS: &[&str] = &[
    "a", "about", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "do",
    "etc", "for", "from", "had", "has", "have", "i", "im", "in", "including", "into", "is", "its", "me", "my",
    "of", "on", "or", "other", "our", "s", "such", "that", "the", "their", "them", "then", "these", "they",
    "this", "those", "to", "using", "was", "we", "were", "which", "who", "with", "within",
];

/// Abbreviations and informal words common in occupation answers, with the
/// words of the classification's titles that they stand for. Sorted by key.
const EXPANSIONS: &[(&str, &str)] = &[
    ("acct", "accountant"),
    ("admin", "administration"),
    ("ambo", "ambulance paramedic"),
    ("asst", "assistant"),
    ("brickie", "bricklayer"),
    ("cabbie", "taxi driver"),
    ("ceo", "chief executive officer"),
    ("cfo", "chief financial officer"),
    ("chippie", "carpenter"),
    ("chippy", "carpenter"),
    ("coo", "chief operating officer"),
    ("coord", "coordinator"),
    ("cto", "chief technology officer"),
    ("dept", "department"),
    ("dev", "developer"),
    ("dr", "doctor"),
    ("ea", "executive assistant"),
    ("elec", "electrician"),
    ("eng", "engineer"),
    ("engr", "engineer"),
    ("firie", "firefighter"),
    ("govt", "government"),
    ("gp", "general practitioner"),
    ("hr", "human resources"),
    ("info", "information"),
    ("it", "ict"),
    ("jnr", "junior"),
    ("jr", "junior"),
    ("maint", "maintenance"),
    ("mech", "mechanic"),
    ("mgmt", "management"),
    ("mgr", "manager"),
    ("mngr", "manager"),
    ("ops", "operations"),
    ("pa", "personal assistant"),
    ("posty", "postal delivery officer"),
    ("prog", "programmer"),
    ("qa", "quality assurance"),
    ("rep", "representative"),
    ("rn", "registered nurse"),
    ("snr", "senior"),
    ("sparkie", "electrician"),
    ("sparky", "electrician"),
    ("sr", "senior"),
    ("supvr", "supervisor"),
    ("sw", "software"),
    ("tchr", "teacher"),
    ("tech", "technician"),
    ("tradie", "tradesperson"),
    ("truckie", "truck driver"),
    ("uni", "university"),
    ("wharfie", "waterside worker"),
];

/// Splits `text` into lowercase ASCII words and calls `emit` with each word
/// that survives stop-word removal, after expanding abbreviations.
///
/// Letters and digits form words. Apostrophes are dropped inside a word
/// ("don't" gives "dont"); every other character separates words.
pub fn for_each_word(text: &str, scratch: &mut String, mut emit: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        while start < bytes.len() && !bytes[start].is_ascii_alphanumeric() {
            start += 1;
        }
        if start == bytes.len() {
            break;
        }

        scratch.clear();
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'\'') {
            if bytes[end] != b'\'' {
                scratch.push(bytes[end].to_ascii_lowercase() as char);
            }
            end += 1;
        }
        start = end;

        match SPECIAL_WORDS.get(scratch.as_str()) {
            Some(Special::Expansion(words)) => words.split(' ').for_each(&mut emit),
            Some(Special::Stop) => {}
            None => emit(scratch),
        }
    }
}

/// The tokenizer's treatment of a word of [`STOP_WORDS`] or [`EXPANSIONS`].
enum Special {
    Stop,
    /// The words the abbreviation stands for, separated by spaces.
    Expansion(&'static str),
}

/// Stop words and abbreviations in one hash table, so that each word costs
/// one lookup instead of two binary searches.
static SPECIAL_WORDS: LazyLock<foldhash::HashMap<&'static str, Special>> = LazyLock::new(|| {
    let stops = STOP_WORDS.iter().map(|&word| (word, Special::Stop));
    let expansions = EXPANSIONS.iter().map(|&(word, words)| (word, Special::Expansion(words)));
    stops.chain(expansions).collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_word(text, &mut String::new(), |word| out.push(word.to_string()));
        out
    }

    #[test]
    fn tables_are_sorted_and_disjoint() {
        assert!(STOP_WORDS.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(EXPANSIONS.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!(SPECIAL_WORDS.len(), STOP_WORDS.len() + EXPANSIONS.len(), "a word is both a stop word and an abbreviation");
    }

    #[test]
    fn lowercases_and_drops_stop_words() {
        assert_eq!(words("Writing code, and Unit-Tests!"), ["writing", "code", "unit", "tests"]);
    }

    #[test]
    fn expands_abbreviations() {
        assert_eq!(words("Snr IT mgr"), ["senior", "ict", "manager"]);
        assert_eq!(words("brickie"), ["bricklayer"]);
    }

    #[test]
    fn joins_apostrophes_and_keeps_digits() {
        assert_eq!(words("don't know 3D"), ["dont", "know", "3d"]);
    }

    #[test]
    fn empty_and_punctuation_only() {
        assert!(words("").is_empty());
        assert!(words(" .,;- ").is_empty());
    }
}
