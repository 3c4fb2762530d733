//! Result tables: markdown for people (every row with its ratio to the first, reference row) and JSON
//! for tools.

use serde::Serialize;

#[derive(Serialize)]
pub struct Column {
    pub name: String,
    /// Show each row's value relative to the reference row.
    pub ratio: bool,
    pub decimals: usize,
}

impl Column {
    pub fn new(name: &str, decimals: usize, ratio: bool) -> Column {
        Column {
            name: name.to_string(),
            ratio,
            decimals,
        }
    }
}

#[derive(Serialize)]
pub struct Row {
    pub target: String,
    /// One value per column (`None`: not applicable to this target), or why the target could not run.
    pub values: Result<Vec<Option<f64>>, String>,
}

#[derive(Serialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

impl Table {
    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n| target |", self.title);
        for c in &self.columns {
            out.push_str(&format!(" {} |", c.name));
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(self.columns.len()));
        out.push('\n');
        let reference = self.rows.first().and_then(|r| r.values.as_ref().ok());
        for row in &self.rows {
            out.push_str(&format!("| {} |", row.target));
            match &row.values {
                Ok(values) => {
                    for (i, c) in self.columns.iter().enumerate() {
                        let value = values.get(i).copied().flatten();
                        let base = reference.and_then(|r| r.get(i).copied().flatten());
                        out.push_str(&format!(" {} |", cell(c, value, base)));
                    }
                }
                Err(reason) => {
                    let reason = reason.replace('|', "/").replace('\n', " ");
                    out.push_str(&format!(" n/a: {reason} |"));
                    out.push_str(&" |".repeat(self.columns.len().saturating_sub(1)));
                }
            }
            out.push('\n');
        }
        out
    }
}

fn cell(column: &Column, value: Option<f64>, base: Option<f64>) -> String {
    let Some(v) = value else {
        return "-".to_string();
    };
    let text = format!("{v:.*}", column.decimals);
    match base {
        Some(b) if column.ratio && b != 0.0 => format!("{text} ({:.2}×)", v / b),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            title: "t".into(),
            columns: vec![Column::new("Gbit/s", 1, true), Column::new("CPU", 2, false)],
            rows: vec![
                Row {
                    target: "direct".into(),
                    values: Ok(vec![Some(10.0), None]),
                },
                Row {
                    target: "proxy".into(),
                    values: Ok(vec![Some(5.0), Some(0.25)]),
                },
                Row {
                    target: "broken".into(),
                    values: Err("exited | badly".into()),
                },
            ],
        }
    }

    #[test]
    fn every_row_has_as_many_cells_as_the_header() {
        let md = table().markdown();
        let lines: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(lines.len(), 5);
        for l in lines {
            assert_eq!(l.matches('|').count(), 4, "{l}");
        }
    }

    #[test]
    fn ratios_are_relative_to_the_first_row() {
        let md = table().markdown();
        assert!(md.contains("| direct | 10.0 (1.00×) | - |"), "{md}");
        assert!(md.contains("| proxy | 5.0 (0.50×) | 0.25 |"), "{md}");
        assert!(md.contains("| broken | n/a: exited / badly | |"), "{md}");
    }
}
