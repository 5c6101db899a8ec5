fn main() -> anyhow::Result<()> {
    research_graph_bench::load::main()
}
