fn main() {
    std::process::exit(progc::cli::main());
}
