//! The `scopecache` operator command.
fn main() {
    eprintln!("usage: scopecache <command>");
    std::process::exit(2);
}
