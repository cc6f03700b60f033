//! The report an import or export prints at the end: what was written, and every piece of the
//! source that was not carried, each with the reason.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// One thing that was not carried (or not carried whole), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// What it concerns: a collection, `collection.field`, `settings.section`, a file or folder.
    pub subject: String,
    pub reason: String,
}

impl Note {
    pub fn new(subject: &str, reason: String) -> Note {
        Note {
            subject: subject.to_string(),
            reason,
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.reason)
    }
}

/// Records written for one collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    pub collection: String,
    pub records: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `import` or `export`.
    pub action: &'static str,
    pub from: PathBuf,
    pub to: PathBuf,
    pub collections: Vec<Written>,
    pub records: u64,
    /// Files whose bytes were copied, and their bytes.
    pub files: u64,
    pub file_bytes: u64,
    pub seconds: f64,
    pub not_carried: Vec<Note>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.action == "import" {
            "Imported"
        } else {
            "Exported"
        };
        writeln!(
            f,
            "{verb} {} records in {} collections from {} to {} in {:.1} s.",
            self.records,
            self.collections.len(),
            self.from.display(),
            self.to.display(),
            self.seconds
        )?;
        let width = self
            .collections
            .iter()
            .map(|w| w.collection.len())
            .max()
            .unwrap_or(0);
        for w in &self.collections {
            writeln!(f, "  {:<width$}  {:>10}", w.collection, w.records)?;
        }
        if self.files > 0 {
            writeln!(
                f,
                "Copied {} files ({}).",
                self.files,
                super::human_bytes(self.file_bytes)
            )?;
        }
        if self.not_carried.is_empty() {
            writeln!(f, "Everything was carried.")?;
        } else {
            writeln!(f, "Not carried ({}):", self.not_carried.len())?;
            for n in &self.not_carried {
                writeln!(f, "  - {n}")?;
            }
        }
        Ok(())
    }
}
