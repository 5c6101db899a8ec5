fn main() -> anyhow::Result<()> {
    research_graph_bench::generate::main()
}
