//! What a run prints: the machine, each figure beside its same-run
//! baseline and the ratio as it is measured, and at the end one Markdown
//! table of everything (ready for BENCHMARKS.md).

use crate::scale::Scale;

/// One figure and the baseline it is judged against.
#[derive(Debug, Clone)]
pub struct Row {
    pub item: &'static str,
    pub figure: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    pub met: Option<bool>,
}

/// A row's parts after its item: (figure, value, baseline, ratio, target, met).
pub type RowParts = (String, String, String, String, String, Option<bool>);

/// All rows of a run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// Records a row and prints it at once.
    pub fn add(&mut self, row: Row) {
        let met = match row.met {
            Some(true) => "  [target met]",
            Some(false) => "  [target MISSED]",
            None => "",
        };
        println!(
            "  {:<46} {:>14}   baseline {:<38} ratio {:<10} target {}{met}",
            row.figure, row.value, row.baseline, row.ratio, row.target
        );
        self.rows.push(row);
    }

    /// Records rows of one item given as (figure, value, baseline, ratio,
    /// target, met).
    pub fn add_all(&mut self, item: &'static str, rows: impl IntoIterator<Item = RowParts>) {
        for (figure, value, baseline, ratio, target, met) in rows {
            self.add(Row {
                item,
                figure,
                value,
                baseline,
                ratio,
                target,
                met,
            });
        }
    }

    /// The Markdown table of every row, in item order.
    pub fn print_table(&mut self) {
        self.rows.sort_by_key(|r| r.item);
        println!("\n| item | figure | value | same-run baseline | ratio | target | met? |");
        println!("|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.item, r.figure, r.value, r.baseline, r.ratio, r.target, met
            );
        }
    }
}

/// A ratio as `0.42×`.
pub fn ratio(value: f64, baseline: f64) -> String {
    if baseline == 0.0 {
        return "–".into();
    }
    let r = value / baseline;
    if r != 0.0 && r.abs() < 0.01 {
        format!("{r:.4}×")
    } else {
        format!("{r:.2}×")
    }
}

/// Prints the item's heading.
pub fn heading(n: &str, title: &str) {
    println!("\n== {n}. {title}");
}

/// Prints the machine the run is on.
pub fn print_machine(scale: &Scale) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|r| r.trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("Herald benchmarks, scale {}", scale.name);
    println!(
        "machine: {cores} cores, {model}, memory {total}, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
