//! Repeated runs and their summary: `RUNS=n` (default 1) repeats a bench `n` times and prints
//! each figure's median with its min-max, so that rechecking a table is one command. The CPU
//! model is printed with every table: ratios and absolute times move between CPUs.

#![allow(dead_code)] // each bench uses a part

/// How many times to run (`RUNS`, default 1).
pub fn count() -> usize {
    std::env::var("RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .filter(|&runs| runs >= 1)
        .unwrap_or(1)
}

/// The CPU model (`/proc/cpuinfo`'s `model name`), or `unknown CPU`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Figures by row and column, over runs.
pub struct Table {
    columns: Vec<String>,
    rows: Vec<(String, Vec<Vec<f64>>)>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// One run's figures for `row` (NaN where a figure does not apply).
    pub fn add(&mut self, row: &str, values: &[f64]) {
        let index = match self.rows.iter().position(|(name, _)| name == row) {
            Some(index) => index,
            None => {
                self.rows
                    .push((row.to_owned(), vec![Vec::new(); self.columns.len()]));
                self.rows.len() - 1
            }
        };
        for (samples, value) in self.rows[index].1.iter_mut().zip(values) {
            samples.push(*value);
        }
    }

    /// Prints the table: each cell the median of the runs, with min-max when there were more.
    pub fn print(&self, runs: usize) {
        println!(
            "\nmedian of {runs} run{} (min-max) on {}\n",
            if runs == 1 { "" } else { "s" },
            cpu_model()
        );
        println!("| | {} |", self.columns.join(" | "));
        println!("|---|{}", "---:|".repeat(self.columns.len()));
        for (name, cells) in &self.rows {
            let cells: Vec<String> = cells.iter().map(|samples| summary(samples)).collect();
            println!("| {name} | {} |", cells.join(" | "));
        }
    }
}

/// `median (min-max)`, or `-` when the figure does not apply.
fn summary(samples: &[f64]) -> String {
    let mut values: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return "-".to_owned();
    }
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    let (min, max) = (values[0], values[values.len() - 1]);
    if values.len() == 1 {
        format_figure(median)
    } else {
        format!(
            "{} ({}-{})",
            format_figure(median),
            format_figure(min),
            format_figure(max)
        )
    }
}

fn format_figure(value: f64) -> String {
    if value.fract() == 0.0 || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}
