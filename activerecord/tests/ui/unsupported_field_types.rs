use activerecord::ActiveRecord;

#[derive(ActiveRecord)]
struct Event {
    id: Option<i64>,
    name: &'static str,
    pair: (i32, i32),
}

#[derive(ActiveRecord)]
struct Timer {
    id: Option<i64>,
    started: std::time::Instant,
}

fn main() {}
