//! CSV input with a header row, as `occoder code --input FILE.csv` codes it
//! and `occoder batch submit` converts it to JSON Lines.

use std::io::Read;

use anyhow::bail;

/// Returns a CSV reader that accepts rows with any number of fields, so
/// that a row that does not fit the header can be reported on its own.
pub(crate) fn reader<R: Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new().flexible(true).from_reader(input)
}

/// Positions of the CSV columns that records are read from, and the number
/// of columns in the header.
pub(crate) struct CsvColumns {
    record_id: Option<usize>,
    occp: usize,
    tasks: usize,
    count: usize,
}

/// The fields of one CSV row. `problem` is the reason the row does not fit the
/// header: a missing text column, or more fields than the header.
pub(crate) struct CsvRow {
    pub record_id: Option<String>,
    pub occp_text: Option<String>,
    pub tasks_text: Option<String>,
    pub problem: Option<String>,
}

impl CsvColumns {
    /// Reads the header row, which must name `occp_text` and `tasks_text`
    /// and may name `recordId` (or `record_id`), in any order and case.
    /// Returns `None` for an empty input, which has no header and no rows.
    pub(crate) fn read_header<R: Read>(csv: &mut csv::Reader<R>) -> anyhow::Result<Option<CsvColumns>> {
        let headers: Vec<String> = csv.headers()?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        if headers.is_empty() {
            return Ok(None);
        }
        let column = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
        let (Some(occp), Some(tasks)) = (column(&["occp_text"]), column(&["tasks_text"])) else {
            bail!("the CSV header must name occp_text and tasks_text columns (and optionally recordId); found {headers:?}");
        };
        Ok(Some(CsvColumns { record_id: column(&["recordid", "record_id"]), occp, tasks, count: headers.len() }))
    }

    /// Reads the fields of one row. Invalid UTF-8 becomes U+FFFD, which
    /// validation then reports with its field.
    pub(crate) fn read(&self, row: &csv::ByteRecord) -> CsvRow {
        let field = |index: usize| row.get(index).map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        let record_id = self.record_id.and_then(field);
        let (occp_text, tasks_text) = (field(self.occp), field(self.tasks));
        let line = row.position().map_or(0, |position| position.line());

        let problem = match (&occp_text, &tasks_text) {
            (None, _) | (_, None) => {
                let name = if occp_text.is_none() { "occp_text" } else { "tasks_text" };
                Some(format!(
                    "{name} is missing: the CSV row on line {line} has {} fields but the header has {}; \
                     give every column, with an empty field for empty text",
                    row.len(),
                    self.count
                ))
            }
            _ if row.len() > self.count => Some(format!(
                "the CSV row on line {line} has {} fields but the header has {}; \
                 put text that contains commas in double quotes",
                row.len(),
                self.count
            )),
            _ => None,
        };
        CsvRow { record_id, occp_text, tasks_text, problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<CsvRow> {
        let mut csv = reader(text.as_bytes());
        let columns = CsvColumns::read_header(&mut csv).unwrap().unwrap();
        csv.byte_records().map(|row| columns.read(&row.unwrap())).collect()
    }

    #[test]
    fn columns_in_any_order_and_case() {
        let rows = rows("Tasks_Text,RecordId,OCCP_TEXT\nmaking coffee,7,barista\n");

        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].record_id.as_deref(), Some("7"));
        assert_eq!(rows[0].occp_text.as_deref(), Some("barista"));
        assert_eq!(rows[0].tasks_text.as_deref(), Some("making coffee"));
        assert!(rows[0].problem.is_none());
    }

    #[test]
    fn rows_that_do_not_fit_have_problem() {
        let rows = rows("occp_text,tasks_text\nchef\nchef,cooking,meals\n");

        assert!(rows[0].problem.as_deref().unwrap().starts_with("tasks_text is missing"), "{:?}", rows[0].problem);
        assert!(rows[1].problem.as_deref().unwrap().contains("put text that contains commas in double quotes"));
    }

    #[test]
    fn header_without_text_columns_is_rejected() {
        let mut csv = reader("title,code\nbarista,471231\n".as_bytes());
        let error = CsvColumns::read_header(&mut csv).err().unwrap();

        assert!(error.to_string().contains("must name occp_text and tasks_text"), "{error}");
    }
}
