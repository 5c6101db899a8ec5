//! Ingestion from PDF files and from arXiv (against a local server that answers as the arXiv
//! API does), and metadata detection through the command line and `ingestPaper`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::{app, gql, token, AppOptions};
use common::{seed_tenant, TestDb};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Path, Query};
use poem::{get, handler, EndpointExt, Response, Route, Server};
use research_graph::ids::{DEFAULT_TENANT, LOCAL_USER};
use research_graph::pipeline::arxiv::{self, ArxivClient, ArxivError, ArxivId};
use serde_json::json;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// PDFs, written by hand: one Type1 font (Helvetica, WinAnsiEncoding with the fi and fl
// ligatures at 0x80 and 0x81, as TeX fonts map them), each line of text placed on the page.

/// A line of text: font size, baseline height, text (`{fi}`, `{fl}`: the ligature glyphs).
type Line<'a> = (f32, f32, &'a str);

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)")
        .replace("{fi}", "\\200")
        .replace("{fl}", "\\201")
}

/// A page's content stream: each heading or isolated line in its own text object, runs of body
/// lines (11 points apart) in one object with relative moves, as TeX writes them.
fn content(lines: &[Line]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let (size, y, text) = lines[i];
        out.push_str(&format!("BT /F1 {size} Tf 72 {y} Td ({}) Tj", escape(text)));
        let mut last = y;
        while let Some((s, y, text)) = lines.get(i + 1).copied() {
            if s != size || last - y != 11.0 {
                break;
            }
            out.push_str(&format!(" 0 -11 Td [({})] TJ", escape(text)));
            last = y;
            i += 1;
        }
        out.push_str(" ET\n");
        i += 1;
    }
    out
}

/// A PDF with these pages' content streams, with correct cross-reference offsets.
fn pdf(pages: &[String]) -> Vec<u8> {
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        String::new(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding << /Type /Encoding \
         /BaseEncoding /WinAnsiEncoding /Differences [128 /fi /fl] >> >>"
            .to_owned(),
    ];
    let mut kids = Vec::new();
    for content in pages {
        let page = objects.len() + 1;
        kids.push(format!("{page} 0 R"));
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
             /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            page + 1
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ));
    }
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    );
    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A two-page paper: title, authors, affiliations, a venue line, a DOI line, an abstract,
/// numbered sections, a word hyphenated across lines, ligatures, page numbers.
fn paper(authors: &str, doi: &str) -> Vec<u8> {
    let first = content(&[
        (18.0, 720.0, "GraphNet: Message Passing for Link Prediction"),
        (11.0, 696.0, authors),
        (9.0, 682.0, "1University of London, 2Analytical Engines Ltd"),
        (
            9.0,
            670.0,
            "Published in the Proceedings of the Workshop on Graph Learning 2024",
        ),
        (9.0, 658.0, doi),
        (12.0, 630.0, "Abstract"),
        (
            10.0,
            616.0,
            "We propose GraphNet, an ef{fi}cient message passing network",
        ),
        (10.0, 605.0, "for link prediction."),
        (12.0, 580.0, "1 Introduction"),
        (
            10.0,
            566.0,
            "Links matter in citation graphs. We describe our meth-",
        ),
        (10.0, 555.0, "ods in Section 2."),
        (9.0, 40.0, "1"),
    ]);
    let second = content(&[
        (12.0, 720.0, "2 Methods"),
        (
            10.0,
            706.0,
            "We stack eight layers. The {fl}ow of messages is bounded.",
        ),
        (12.0, 680.0, "3 Results"),
        (10.0, 666.0, "GraphNet reaches 0.91 AUC on Cora."),
        (9.0, 40.0, "2"),
    ]);
    pdf(&[first, second])
}

// ---------------------------------------------------------------------------------------------
// The command line

/// Makes the local user owner of the default tenant, and returns the binary's DATABASE_URL.
async fn cli_database(t: &TestDb) -> String {
    t.superuser()
        .await
        .execute(
            "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
            &[&DEFAULT_TENANT.0, &LOCAL_USER.0],
        )
        .await
        .unwrap();
    let config = t.app_config();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
    };
    format!("host={host} port=5432 user=rg_app dbname={}", t.name)
}

/// Runs `research-graph ingest ARGS… --tenant default`: success, stdout, stderr.
async fn run_cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_research-graph"))
        .arg("ingest")
        .args(args)
        .args(["--tenant", "default"])
        .env("DATABASE_URL", url)
        .env_remove("ADMIN_DATABASE_URL")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A paper as stored: title, authors, abstract, doi, arxiv_id, year, venue, source_kind.
type Stored = (
    String,
    Vec<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
    String,
);

async fn stored(t: &TestDb, paper: &str) -> Stored {
    let r = t
        .superuser()
        .await
        .query_one(
            "SELECT title, authors, abstract, doi, arxiv_id, year, venue, source_kind \
             FROM app.papers WHERE id = $1",
            &[&paper.parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap();
    (
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
        r.get(7),
    )
}

/// The sections of a paper: kind, heading, content.
async fn sections(t: &TestDb, paper: Uuid) -> Vec<(String, Option<String>, String)> {
    t.superuser()
        .await
        .query(
            "SELECT kind, heading, content FROM app.paper_sections WHERE paper_id = $1 \
             ORDER BY ordinal",
            &[&paper],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn pdf_files_become_papers_with_sections_and_detected_metadata() {
    let t = TestDb::new().await;
    let url = cli_database(&t).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("graphnet.PDF");
    let garbage = dir.path().join("garbage.pdf");
    let scan = dir.path().join("scan.pdf");
    std::fs::write(
        &good,
        paper("Ada Lovelace1, Alan Turing2", "DOI: 10.5555/graphnet.2024"),
    )
    .unwrap();
    std::fs::write(&garbage, b"\x89PNG\r\n\x1a\n not a PDF at all").unwrap();
    std::fs::write(&scan, pdf(&["q 0 0 m 612 792 l S Q\n".to_owned()])).unwrap();
    let paths = [&good, &garbage, &scan].map(|p| p.to_str().unwrap().to_owned());
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();

    let (ok, stdout, stderr) = run_cli(&url, &args).await;
    assert!(!ok, "a failed file fails the command");
    assert!(
        stdout.contains("1 ingested, 0 unchanged, 2 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("ingested {} (5 sections)", paths[0])),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "failed {}: not a PDF (the file does not start with %PDF-)",
            paths[1]
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("failed {}: the PDF has no text layer", paths[2])),
        "{stderr}"
    );

    let su = t.superuser().await;
    let row = su
        .query_one(
            "SELECT id FROM app.papers WHERE tenant_id = $1 AND source_kind = 'pdf'",
            &[&DEFAULT_TENANT.0],
        )
        .await
        .unwrap();
    let id: Uuid = row.get(0);
    assert_eq!(
        stored(&t, &id.to_string()).await,
        (
            "GraphNet: Message Passing for Link Prediction".to_owned(),
            vec!["Ada Lovelace".to_owned(), "Alan Turing".to_owned()],
            Some(
                "We propose GraphNet, an efficient message passing network\nfor link prediction."
                    .to_owned()
            ),
            Some("10.5555/graphnet.2024".to_owned()),
            None,
            Some(2024),
            Some("Proceedings of the Workshop on Graph Learning 2024".to_owned()),
            "pdf".to_owned(),
        )
    );
    let found = sections(&t, id).await;
    let kinds: Vec<&str> = found.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        kinds,
        ["other", "abstract", "introduction", "methods", "results"]
    );
    assert_eq!(
        found[2].2, "Links matter in citation graphs. We describe our methods\nin Section 2.",
        "the hyphenated word is joined, the page number is gone"
    );
    assert_eq!(
        found[3],
        (
            "methods".to_owned(),
            Some("2 Methods".to_owned()),
            "We stack eight layers. The flow of messages is bounded.".to_owned()
        )
    );
    assert_eq!(found[4].2, "GraphNet reaches 0.91 AUC on Cora.");

    // The same PDF again: unchanged.
    let (ok, stdout, _) = run_cli(&url, &args[..1]).await;
    assert!(ok);
    assert!(
        stdout.contains("0 ingested, 1 unchanged, 0 failed"),
        "{stdout}"
    );
}

#[tokio::test]
async fn ingest_paper_detects_metadata_that_were_not_given() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("alpha").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let h = [("x-tenant-id", tenant.to_string())];
    let query = "mutation($i: IngestPaperInput!) { ingestPaper(input: $i) { created
        paper { rowId title authors doi arxivId year venue } } }";
    let text = "Learning to Rank Graphs\nAda Lovelace, Alan M. Turing and Grace Hopper\n\
                Analytical Engines Ltd., London\narXiv:2405.01234v1 [cs.LG] 2 May 2024\n\n\
                Abstract\nWe rank graphs.\n\n1 Introduction\nGraphs again.";
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(owner)),
        &h,
        query,
        json!({ "i": { "content": text, "year": 2023 } }),
    )
    .await;
    let paper = &body["data"]["ingestPaper"]["paper"];
    assert_eq!(
        (
            &paper["authors"],
            &paper["arxivId"],
            &paper["year"],
            &paper["doi"]
        ),
        (
            &json!(["Ada Lovelace", "Alan M. Turing", "Grace Hopper"]),
            &json!("2405.01234"),
            &json!(2023),
            &json!(null)
        ),
        "the given year wins: {body}"
    );

    // Another text of the same arXiv paper (detected id): that paper, nothing new.
    let (_, again) = gql(
        &cli,
        "/graphql",
        Some(&token(owner)),
        &h,
        query,
        json!({ "i": { "content": format!("{text}\n\nA revised paragraph.") } }),
    )
    .await;
    assert_eq!(again["data"]["ingestPaper"]["created"], false, "{again}");
    assert_eq!(
        again["data"]["ingestPaper"]["paper"]["rowId"],
        paper["rowId"]
    );
}

// ---------------------------------------------------------------------------------------------
// arXiv

/// What the mock arXiv serves and what it was asked.
#[derive(Default)]
struct ArxivState {
    base: String,
    requests: Vec<String>,
}

/// The Atom feed arXiv answers for `id_list=2301.01234vN` (or without version: the latest).
fn feed(base: &str, version: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <id>https://arxiv.org/api/JbCJ3nDUpD8r6V1lYoLmJ3T9ZpY</id>
  <title>arXiv Query: search_query=&amp;id_list=2301.01234&amp;start=0&amp;max_results=1</title>
  <updated>2023-02-11T00:00:00Z</updated>
  <link href="https://arxiv.org/api/query?search_query=&amp;start=0&amp;max_results=1&amp;id_list=2301.01234" type="application/atom+xml"/>
  <opensearch:itemsPerPage>1</opensearch:itemsPerPage>
  <opensearch:totalResults>1</opensearch:totalResults>
  <opensearch:startIndex>0</opensearch:startIndex>
  <entry>
    <id>http://arxiv.org/abs/2301.01234{version}</id>
    <title>GraphNet: Message Passing for
  Link Prediction</title>
    <updated>2023-02-10T18:00:00Z</updated>
    <link href="{base}/abs/2301.01234{version}" rel="alternate" type="text/html"/>
    <link href="{base}/pdf/2301.01234{version}" rel="related" type="application/pdf" title="pdf"/>
    <link href="https://doi.org/10.1234/graphnet.2023" rel="related" title="doi"/>
    <summary>  We propose GraphNet, a message passing network for link
prediction that reaches 0.91 AUC on Cora.
</summary>
    <category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
    <category term="cs.SI" scheme="http://arxiv.org/schemas/atom"/>
    <published>2023-01-03T18:59:59Z</published>
    <arxiv:comment>12 pages, 3 figures</arxiv:comment>
    <arxiv:journal_ref>Proc. ICML 2023</arxiv:journal_ref>
    <arxiv:doi>10.1234/graphnet.2023</arxiv:doi>
    <arxiv:primary_category term="cs.LG"/>
    <author>
      <name>Ada Lovelace</name>
      <arxiv:affiliation>University of London</arxiv:affiliation>
    </author>
    <author>
      <name>Alan Turing</name>
    </author>
  </entry>
</feed>
"#
    )
}

/// arXiv's answer for an id it does not have.
const EMPTY_FEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <id>https://arxiv.org/api/6eSnf8t3sCLXg8BR1pKOMHA3Zqw</id>
  <title>arXiv Query: search_query=&amp;id_list=2301.99999&amp;start=0&amp;max_results=1</title>
  <updated>2023-02-11T00:00:00Z</updated>
  <link href="https://arxiv.org/api/query?search_query=&amp;start=0&amp;max_results=1&amp;id_list=2301.99999" type="application/atom+xml"/>
  <opensearch:itemsPerPage>1</opensearch:itemsPerPage>
  <opensearch:totalResults>0</opensearch:totalResults>
  <opensearch:startIndex>0</opensearch:startIndex>
</feed>
"#;

#[derive(serde::Deserialize)]
struct ApiQuery {
    id_list: String,
}

#[handler]
async fn api(Query(q): Query<ApiQuery>, state: Data<&Arc<Mutex<ArxivState>>>) -> Response {
    let base = {
        let mut state = state.lock().unwrap();
        state.requests.push(format!("api {}", q.id_list));
        state.base.clone()
    };
    let atom = |body: String| {
        Response::builder()
            .content_type("application/atom+xml; charset=utf-8")
            .body(body)
    };
    match q.id_list.as_str() {
        "2301.01234" | "2301.01234v2" => atom(feed(&base, "v2")),
        "2301.01234v1" => atom(feed(&base, "v1")),
        "2402.00503" => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("retry-after", "30")
            .body("Service Unavailable"),
        "2402.00408" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            atom(EMPTY_FEED.to_owned())
        }
        _ => atom(EMPTY_FEED.to_owned()),
    }
}

#[handler]
async fn pdf_file(Path(id): Path<String>, state: Data<&Arc<Mutex<ArxivState>>>) -> Response {
    state.lock().unwrap().requests.push(format!("pdf {id}"));
    Response::builder()
        .content_type("application/pdf")
        .body(paper("A. Lovelace and A. Turing", "DOI: 10.5555/preprint"))
}

/// A local server speaking the arXiv API.
async fn mock_arxiv() -> (String, Arc<Mutex<ArxivState>>) {
    let state = Arc::new(Mutex::new(ArxivState::default()));
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let base = format!("http://{addr}");
    state.lock().unwrap().base = base.clone();
    let routes = Route::new()
        .at("/api/query", get(api))
        .at("/pdf/:id", get(pdf_file))
        .data(Arc::clone(&state));
    tokio::spawn(Server::new_with_acceptor(acceptor).run(routes));
    (base, state)
}

fn requests(state: &Arc<Mutex<ArxivState>>) -> Vec<String> {
    state.lock().unwrap().requests.clone()
}

#[tokio::test]
async fn an_arxiv_paper_is_fetched_once_with_the_feeds_metadata() {
    let t = TestDb::new().await;
    let (tenant, owner) = t.create_tenant("alpha").await;
    let (base, state) = mock_arxiv().await;
    let client = ArxivClient::new(&base);

    let id = ArxivId::parse("arXiv:2301.01234v2").unwrap();
    let outcome = arxiv::ingest(&t.db, tenant, owner, &client, &id)
        .await
        .unwrap();
    assert!(outcome.stored.created);
    assert_eq!(outcome.stored.sections, 5);
    assert_eq!(requests(&state), ["api 2301.01234v2", "pdf 2301.01234v2"]);
    assert_eq!(
        stored(&t, &outcome.stored.paper.to_string()).await,
        (
            "GraphNet: Message Passing for Link Prediction".to_owned(),
            vec!["Ada Lovelace".to_owned(), "Alan Turing".to_owned()],
            Some(
                "We propose GraphNet, a message passing network for link prediction that \
                 reaches 0.91 AUC on Cora."
                    .to_owned()
            ),
            Some("10.1234/graphnet.2023".to_owned()),
            Some("2301.01234".to_owned()),
            Some(2023),
            Some("Proc. ICML 2023".to_owned()),
            "arxiv".to_owned(),
        ),
        "the feed's metadata win over what the PDF says"
    );
    let kinds: Vec<String> = sections(&t, outcome.stored.paper)
        .await
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(
        kinds,
        ["other", "abstract", "introduction", "methods", "results"]
    );

    // Other versions, a link, the bare id: the same paper, and nothing is fetched.
    for again in [
        "2301.01234v1",
        "2301.01234",
        "https://arxiv.org/abs/2301.01234v1",
        "https://arxiv.org/pdf/2301.01234v2.pdf",
    ] {
        let again = arxiv::ingest(
            &t.db,
            tenant,
            owner,
            &client,
            &ArxivId::parse(again).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(
            (again.stored.paper, again.stored.created, again.entry),
            (outcome.stored.paper, false, None)
        );
    }
    assert_eq!(requests(&state).len(), 2, "{:?}", requests(&state));

    let missing = ArxivId::parse("2301.99999").unwrap();
    let error = arxiv::ingest(&t.db, tenant, owner, &client, &missing)
        .await
        .unwrap_err();
    assert!(matches!(error, ArxivError::NotFound(_)), "{error:?}");
    assert_eq!(error.to_string(), "arXiv has no paper 2301.99999");

    let busy = ArxivId::parse("2402.00503").unwrap();
    let error = arxiv::ingest(&t.db, tenant, owner, &client, &busy)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ArxivError::Http { status: 503, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "arXiv answered HTTP 503 for the metadata of 2402.00503 (arXiv is busy or limiting \
         requests; try again in a minute)"
    );

    let slow = ArxivId::parse("2402.00408").unwrap();
    let impatient =
        ArxivClient::new(&base).with_timeouts(Duration::from_secs(1), Duration::from_secs(1));
    let error = arxiv::ingest(&t.db, tenant, owner, &impatient, &slow)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "arXiv did not answer in 1 s for the metadata of 2402.00408; try again later"
    );

    let count: i64 = t
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM app.papers WHERE tenant_id = $1",
            &[&tenant.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn the_published_version_under_its_doi_is_the_same_paper() {
    let t = TestDb::new().await;
    let seeded = seed_tenant(&t, "beta", "10.1234/graphnet.2023", "k").await;
    let (base, state) = mock_arxiv().await;
    let client = ArxivClient::new(&base);
    let id = ArxivId::parse("2301.01234").unwrap();
    let outcome = arxiv::ingest(&t.db, seeded.tenant, seeded.owner, &client, &id)
        .await
        .unwrap();
    assert_eq!(
        (outcome.stored.paper, outcome.stored.created),
        (seeded.paper, false)
    );
    assert_eq!(requests(&state), ["api 2301.01234"], "no PDF fetched");
}

#[tokio::test]
async fn the_command_line_ingests_arxiv_ids_and_links_next_to_files() {
    let t = TestDb::new().await;
    let url = cli_database(&t).await;
    let (base, state) = mock_arxiv().await;
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("notes.md");
    std::fs::write(&md, "# Notes on Graphs\n\n## Abstract\nShort.\n").unwrap();
    let md = md.to_str().unwrap();

    let (ok, stdout, stderr) = run_cli(
        &url,
        &[
            "2301.01234v2",
            "2301.99999",
            md,
            "not-a-file-nor-an-id",
            "--arxiv-base",
            &base,
        ],
    )
    .await;
    assert!(!ok, "a failed argument fails the command");
    assert!(
        stdout.contains("2 ingested, 0 unchanged, 2 failed"),
        "{stdout}"
    );
    assert!(
        stderr.contains("ingested 2301.01234v2 (5 sections)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("failed 2301.99999: arXiv has no paper 2301.99999"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "failed not-a-file-nor-an-id: no such file, and not an arXiv id or link either"
        ),
        "{stderr}"
    );

    // A link to another version of the same paper: unchanged, and not fetched.
    let (ok, stdout, stderr) = run_cli(
        &url,
        &["https://arxiv.org/abs/2301.01234v1", "--arxiv-base", &base],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("0 ingested, 1 unchanged, 0 failed"),
        "{stdout}"
    );
    assert_eq!(
        requests(&state),
        ["api 2301.01234v2", "pdf 2301.01234v2", "api 2301.99999"]
    );
    let kinds: Vec<String> = t
        .superuser()
        .await
        .query(
            "SELECT source_kind FROM app.papers WHERE tenant_id = $1 ORDER BY source_kind",
            &[&DEFAULT_TENANT.0],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, ["arxiv", "markdown"]);

    // A busy arXiv is reported as such.
    let (ok, _, stderr) = run_cli(&url, &["2402.00503", "--arxiv-base", &base]).await;
    assert!(!ok);
    assert!(
        stderr.contains("failed 2402.00503: arXiv answered HTTP 503"),
        "{stderr}"
    );
}
