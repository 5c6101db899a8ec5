fn main() -> anyhow::Result<()> {
    research_graph_bench::report::main()
}
