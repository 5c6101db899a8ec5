//! PDF ingestion: the text layer of a PDF becomes plain text for the plain-text parser.
//!
//! The file is read with `lopdf`, without its default features (no parallel loading, no date
//! libraries). `lopdf` answers damaged input with errors, bounds how far a stream may inflate
//! (a small crafted stream cannot grow to gigabytes), opens files encrypted with the empty
//! password (restrictions only) and decodes font encodings (the standard ones, `/Differences`,
//! `/ToUnicode`). `pdf-extract`, built on `lopdf`, lays text out more completely but panics on
//! input it does not understand, by design, which a server must not do; and `lopdf`'s own
//! `extract_text` ignores text positioning, so the lines of a paragraph run together. The layout
//! is therefore done here, from the content stream's text operators:
//!
//! - a move to another baseline starts a new line, and a jump over twice the font size a new
//!   paragraph; a move along the baseline past the end of the previous text (estimated from the
//!   font's widths) is a space, and so is a `TJ` adjustment of more than 0.15 em; a gap wider
//!   than any word space (1.2 em: names set side by side, table columns) is two spaces;
//! - the lines at the top of the first page in one size larger than most of the page's text
//!   are the title, joined into one line (the parser takes the first line as the title);
//! - text inside form XObjects (mostly figures that LaTeX embeds: axis labels, legends) is read
//!   only on pages with no text of their own, since some producers draw whole pages as forms.
//!
//! The text is then cleaned of what PDF text typically breaks: ligatures (ﬁ, ﬂ, …) are spelt
//! out, words hyphenated across lines are joined ("meth-" and "ods" make "methods"; a word that
//! already has a hyphen keeps it: "state-of-the-art"), page numbers and running headers and
//! footers (the same line at the top or bottom of most pages) are dropped, and an arXiv stamp
//! at the very top of the first page moves to the end of that page, so the title comes first.
//!
//! A document with fewer than [`MIN_TEXT_CHARS`] letters and digits has no text layer: a scan.

use std::collections::HashMap;
use std::sync::LazyLock;

use lopdf::content::Content;
use lopdf::{Dictionary, Encoding, Object, ObjectId, Stream};
use regex::Regex;

use super::ingest::{IngestError, MAX_DOCUMENT_BYTES};

/// Largest PDF accepted, in bytes.
pub const MAX_PDF_BYTES: usize = 64 * 1024 * 1024;

/// Largest decoded content of one page (or one stream while loading), in bytes.
const MAX_STREAM_BYTES: usize = 32 * 1024 * 1024;

/// Fewest letters and digits a PDF with a text layer has.
pub const MIN_TEXT_CHARS: usize = 20;

/// How deep forms inside forms are followed.
const MAX_FORM_DEPTH: usize = 4;

/// How deep the graphics state stack goes (`q` past it is ignored).
const MAX_STATE_DEPTH: usize = 64;

/// The cleaned text layer of a PDF.
pub fn extract_text(bytes: &[u8]) -> Result<String, IngestError> {
    if bytes.len() > MAX_PDF_BYTES {
        return Err(IngestError::PdfTooLarge);
    }
    // The header may follow some junk, within the first kilobyte (ISO 32000-2, annex H).
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(IngestError::NotPdf);
    }
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(MAX_STREAM_BYTES),
        ..lopdf::LoadOptions::default()
    };
    let pdf = lopdf::Document::load_mem_with_options(bytes, options).map_err(|e| match e {
        lopdf::Error::InvalidPassword | lopdf::Error::Decryption(_) => IngestError::Encrypted,
        e => IngestError::BadPdf(e.to_string()),
    })?;
    if pdf.trailer.has(b"Encrypt") && !pdf.was_encrypted() {
        return Err(IngestError::Encrypted);
    }
    let pages = pdf.get_pages();
    if pages.is_empty() {
        return Err(IngestError::BadPdf("it has no pages".to_owned()));
    }
    let mut texts = Vec::with_capacity(pages.len());
    let (mut total, mut first_error) = (0, None);
    for (number, page) in &pages {
        match page_text(&pdf, *page, texts.is_empty()) {
            Ok(text) => {
                total += text.len();
                if total > MAX_DOCUMENT_BYTES {
                    return Err(IngestError::TooLarge);
                }
                texts.push(text);
            }
            Err(e) => {
                tracing::warn!(page = number, error = %e, "a PDF page could not be read");
                first_error.get_or_insert(e);
                texts.push(String::new());
            }
        }
    }
    if let Some(e) = first_error.filter(|_| texts.iter().all(String::is_empty)) {
        return Err(IngestError::BadPdf(e.to_string()));
    }
    let text = clean_pages(&texts);
    if text.chars().filter(|c| c.is_alphanumeric()).count() < MIN_TEXT_CHARS {
        return Err(IngestError::NoTextLayer);
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// Layout

/// An affine matrix `[a b c d e f]` as PDF writes it (row vectors: `p' = p × M`).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Matrix([f32; 6]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    fn translate(x: f32, y: f32) -> Matrix {
        Matrix([1.0, 0.0, 0.0, 1.0, x, y])
    }

    /// `self × other`: `self` applied first.
    fn then(self, other: Matrix) -> Matrix {
        let [a1, b1, c1, d1, e1, f1] = self.0;
        let [a2, b2, c2, d2, e2, f2] = other.0;
        Matrix([
            a1 * a2 + b1 * c2,
            a1 * b2 + b1 * d2,
            c1 * a2 + d1 * c2,
            c1 * b2 + d1 * d2,
            e1 * a2 + f1 * c2 + e2,
            e1 * b2 + f1 * d2 + f2,
        ])
    }

    fn from_operands(operands: &[Object]) -> Option<Matrix> {
        let mut m = [0.0; 6];
        for (slot, o) in m.iter_mut().zip(operands) {
            *slot = o.as_float().ok()?;
        }
        (operands.len() >= 6).then_some(Matrix(m))
    }

    fn origin(self) -> (f32, f32) {
        (self.0[4], self.0[5])
    }

    /// How much the matrix scales a vertical distance.
    fn vertical_scale(self) -> f32 {
        self.0[2].hypot(self.0[3])
    }
}

/// A font, as far as text extraction needs it.
struct Font<'a> {
    /// None: the codes cannot be turned into text (no usable encoding or `/ToUnicode`).
    encoding: Option<Encoding<'a>>,
    /// Composite (Type0) font: two bytes a code.
    two_byte: bool,
    first_char: u32,
    /// Widths from `first_char` on, in text space units.
    widths: Vec<f32>,
    /// Composite font widths by CID.
    cid_widths: HashMap<u32, f32>,
    default_width: f32,
}

/// A gap, in em, wider than any word space: two spaces in the text.
const WIDE_GAP: f32 = 1.2;

/// How the layout marks a wide gap for the clean-up (an em quad).
const WIDE_SPACE: char = '\u{2001}';

/// A width for fonts that give none (the 14 standard fonts): about an average glyph's.
const UNKNOWN_WIDTH: f32 = 0.5;

impl<'a> Font<'a> {
    fn new(pdf: &'a lopdf::Document, dict: &'a Dictionary) -> Font<'a> {
        let get = |d: &'a Dictionary, key: &[u8]| d.get_deref(key, pdf).ok();
        let number = |o: Option<&Object>| o.and_then(|o| o.as_float().ok());
        let two_byte = get(dict, b"Subtype").and_then(|s| s.as_name().ok()) == Some(b"Type0");
        let mut font = Font {
            encoding: dict
                .get_font_encoding_with_limit(pdf, MAX_STREAM_BYTES)
                .ok(),
            two_byte,
            first_char: 0,
            widths: Vec::new(),
            cid_widths: HashMap::new(),
            default_width: UNKNOWN_WIDTH,
        };
        if two_byte {
            let descendant = get(dict, b"DescendantFonts")
                .and_then(|d| d.as_array().ok())
                .and_then(|a| a.first())
                .and_then(|d| pdf.dereference(d).ok())
                .and_then(|(_, d)| d.as_dict().ok());
            if let Some(cid) = descendant {
                font.default_width = number(get(cid, b"DW")).unwrap_or(1000.0) / 1000.0;
                if let Some(w) = get(cid, b"W").and_then(|w| w.as_array().ok()) {
                    font.cid_widths = cid_widths(pdf, w);
                }
            }
            return font;
        }
        // Type3 glyph space is the font matrix's; everything else is a thousandth of an em.
        let unit = get(dict, b"FontMatrix")
            .and_then(|m| m.as_array().ok())
            .and_then(|m| number(m.first()))
            .unwrap_or(0.001);
        font.first_char = number(get(dict, b"FirstChar")).unwrap_or(0.0).max(0.0) as u32;
        if let Some(widths) = get(dict, b"Widths").and_then(|w| w.as_array().ok()) {
            font.widths = widths
                .iter()
                .map(|w| {
                    let w = pdf.dereference(w).ok().map(|(_, w)| w);
                    number(w).unwrap_or(0.0) * unit
                })
                .collect();
            font.default_width = get(dict, b"FontDescriptor")
                .and_then(|d| d.as_dict().ok())
                .and_then(|d| number(get(d, b"MissingWidth")))
                .map(|w| w * unit)
                .filter(|w| *w > 0.0)
                .unwrap_or(UNKNOWN_WIDTH);
        }
        font
    }

    fn width(&self, code: u32) -> f32 {
        if self.two_byte {
            return self
                .cid_widths
                .get(&code)
                .copied()
                .unwrap_or(self.default_width);
        }
        code.checked_sub(self.first_char)
            .and_then(|i| self.widths.get(i as usize))
            .copied()
            .unwrap_or(self.default_width)
    }

    fn codes<'b>(&self, bytes: &'b [u8]) -> impl Iterator<Item = u32> + 'b {
        let step = if self.two_byte { 2 } else { 1 };
        bytes
            .chunks(step)
            .map(|c| c.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)))
    }
}

/// A composite font's `/W` array: `c [w1 w2 …]` or `c_first c_last w`.
fn cid_widths(pdf: &lopdf::Document, w: &[Object]) -> HashMap<u32, f32> {
    let resolve = |o: &Object| pdf.dereference(o).ok().map(|(_, o)| o.clone());
    let items: Vec<Object> = w.iter().filter_map(resolve).collect();
    let mut widths = HashMap::new();
    let mut i = 0;
    while i + 1 < items.len() {
        let Ok(first) = items[i].as_float() else {
            break;
        };
        let first = first.max(0.0) as u32;
        match &items[i + 1] {
            Object::Array(list) => {
                for (k, width) in list.iter().enumerate() {
                    if let Some(width) = resolve(width).and_then(|w| w.as_float().ok()) {
                        widths.insert(first + k as u32, width / 1000.0);
                    }
                }
                i += 2;
            }
            last => {
                let (Ok(last), Some(Ok(width))) =
                    (last.as_float(), items.get(i + 2).map(Object::as_float))
                else {
                    break;
                };
                // A range covers at most the two-byte code space.
                for cid in first..=(last.max(0.0) as u32).min(first + 0xFFFF) {
                    widths.insert(cid, width / 1000.0);
                }
                i += 3;
            }
        }
    }
    widths
}

/// The fonts of a page or form, and those of the page around a form.
struct Fonts<'a, 'p> {
    own: HashMap<Vec<u8>, Font<'a>>,
    outer: Option<&'p Fonts<'a, 'p>>,
}

impl<'a> Fonts<'a, '_> {
    fn get(&self, name: &[u8]) -> Option<&Font<'a>> {
        self.own
            .get(name)
            .or_else(|| self.outer.and_then(|o| o.get(name)))
    }
}

/// The fonts of a resource dictionary.
fn resource_fonts<'a>(
    pdf: &'a lopdf::Document,
    resources: &'a Dictionary,
) -> HashMap<Vec<u8>, Font<'a>> {
    resources
        .get_deref(b"Font", pdf)
        .and_then(Object::as_dict)
        .map(|fonts| {
            fonts
                .iter()
                .filter_map(|(name, font)| {
                    let font = pdf.dereference(font).ok()?.1.as_dict().ok()?;
                    Some((name.clone(), Font::new(pdf, font)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Where the last text ended.
#[derive(Clone, Copy)]
struct Pen {
    x: f32,
    y: f32,
    em: f32,
}

/// The page's text as it is laid out.
#[derive(Default)]
struct Layout {
    /// Lines with the size of their first text; an empty line separates paragraphs.
    lines: Vec<(String, f32)>,
    last: Option<Pen>,
}

impl Layout {
    /// Adds `text` shown from `start` to `end` at `em` (user space); `moved`: a positioning
    /// operator came since the last text.
    fn put(&mut self, text: &str, start: (f32, f32), end: (f32, f32), em: f32, moved: bool) {
        if let (Some(last), true) = (self.last, moved) {
            let em_max = em.max(last.em).max(0.1);
            let dy = (start.1 - last.y).abs();
            if dy > 2.0 * em_max {
                self.new_line(true);
            } else if dy > 0.5 * em_max {
                self.new_line(false);
            } else if start.0 - last.x > 0.2 * em_max {
                self.gap((start.0 - last.x) / em_max);
            }
        }
        if self.lines.is_empty() {
            self.lines.push((String::new(), em));
        }
        if let Some(line) = self.lines.last_mut() {
            if line.0.trim().is_empty() {
                line.1 = em;
            }
            line.0
                .extend(text.chars().filter(|c| !c.is_control() || *c == '\t'));
        }
        self.last = Some(Pen {
            x: end.0,
            y: end.1,
            em,
        });
    }

    fn new_line(&mut self, paragraph: bool) {
        let Some(line) = self.lines.last_mut() else {
            return;
        };
        line.0.truncate(line.0.trim_end().len());
        if line.0.is_empty() {
            return;
        }
        if paragraph {
            self.lines.push((String::new(), 0.0));
        }
        self.lines.push((String::new(), 0.0));
    }

    /// A horizontal gap of `width` em: a space, or two for a gap wider than any word space
    /// (between names set side by side, or table columns).
    fn gap(&mut self, width: f32) {
        let Some(line) = self.lines.last_mut() else {
            return;
        };
        if line.0.trim().is_empty() {
            return;
        }
        if width >= WIDE_GAP {
            line.0.push(WIDE_SPACE);
        } else if !line.0.ends_with([' ', WIDE_SPACE]) {
            line.0.push(' ');
        }
    }

    fn has_text(&self) -> bool {
        self.lines
            .iter()
            .any(|l| l.0.chars().any(char::is_alphanumeric))
    }

    /// Joins the lines of a title set on several lines: the first lines of the page (an arXiv
    /// stamp aside) in one size, larger than most of the page's text.
    fn join_title(&mut self) {
        let mut sizes: Vec<f32> = self
            .lines
            .iter()
            .filter(|l| !l.0.trim().is_empty())
            .map(|l| l.1)
            .collect();
        sizes.sort_by(f32::total_cmp);
        let Some(median) = sizes.get(sizes.len() / 2).copied() else {
            return;
        };
        let Some(start) = self
            .lines
            .iter()
            .position(|l| !l.0.trim().is_empty() && !ARXIV_STAMP.is_match(l.0.trim()))
        else {
            return;
        };
        let em = self.lines[start].1;
        if em < 1.15 * median {
            return;
        }
        let same = |l: &(String, f32)| !l.0.trim().is_empty() && (l.1 - em).abs() <= 0.05 * em;
        let end = (start + 1..self.lines.len().min(start + 4))
            .find(|i| !same(&self.lines[*i]))
            .unwrap_or(self.lines.len().min(start + 4));
        if end - start > 1 {
            let title: Vec<String> = self
                .lines
                .drain(start..end)
                .map(|l| l.0.trim().to_owned())
                .collect();
            self.lines.insert(start, (title.join(" "), em));
        }
    }

    /// The text, a title on several lines joined when `first_page`.
    fn text(mut self, first_page: bool) -> String {
        if first_page {
            self.join_title();
        }
        let lines: Vec<&str> = self.lines.iter().map(|l| l.0.trim_end()).collect();
        lines.join("\n")
    }
}

/// The graphics state that text extraction follows.
#[derive(Clone)]
struct GState {
    ctm: Matrix,
    font: Option<Vec<u8>>,
    size: f32,
    char_space: f32,
    word_space: f32,
    h_scale: f32,
    leading: f32,
}

/// Runs content streams into a [`Layout`].
struct Interpreter<'a> {
    pdf: &'a lopdf::Document,
    layout: Layout,
    /// Read forms where they are drawn (false: note them in `deferred`).
    read_forms: bool,
    deferred: Vec<(&'a Stream, Matrix)>,
}

impl<'a> Interpreter<'a> {
    fn run(
        &mut self,
        content: &[u8],
        fonts: &Fonts<'a, '_>,
        resources: &[&'a Dictionary],
        ctm: Matrix,
        depth: usize,
    ) -> Result<(), lopdf::Error> {
        let content = Content::decode(content)?;
        let mut gs = GState {
            ctm,
            font: None,
            size: 0.0,
            char_space: 0.0,
            word_space: 0.0,
            h_scale: 1.0,
            leading: 0.0,
        };
        let mut stack: Vec<GState> = Vec::new();
        let (mut tm, mut tlm) = (Matrix::IDENTITY, Matrix::IDENTITY);
        let mut moved = true;
        for op in &content.operations {
            let operands = &op.operands;
            let float = |i: usize| operands.get(i).and_then(|o| o.as_float().ok());
            match op.operator.as_str() {
                "q" if stack.len() < MAX_STATE_DEPTH => stack.push(gs.clone()),
                "Q" => gs = stack.pop().unwrap_or(gs),
                "cm" => {
                    if let Some(m) = Matrix::from_operands(operands) {
                        gs.ctm = m.then(gs.ctm);
                    }
                }
                "BT" => {
                    (tm, tlm) = (Matrix::IDENTITY, Matrix::IDENTITY);
                    moved = true;
                }
                "Tf" => {
                    gs.font = operands
                        .first()
                        .and_then(|n| n.as_name().ok())
                        .map(<[u8]>::to_vec);
                    gs.size = float(1).unwrap_or(gs.size);
                }
                "Tc" => gs.char_space = float(0).unwrap_or(gs.char_space),
                "Tw" => gs.word_space = float(0).unwrap_or(gs.word_space),
                "Tz" => gs.h_scale = float(0).map(|s| s / 100.0).unwrap_or(gs.h_scale),
                "TL" => gs.leading = float(0).unwrap_or(gs.leading),
                "Td" | "TD" => {
                    let (Some(x), Some(y)) = (float(0), float(1)) else {
                        continue;
                    };
                    if op.operator == "TD" {
                        gs.leading = -y;
                    }
                    tlm = Matrix::translate(x, y).then(tlm);
                    tm = tlm;
                    moved = true;
                }
                "Tm" => {
                    if let Some(m) = Matrix::from_operands(operands) {
                        (tm, tlm) = (m, m);
                        moved = true;
                    }
                }
                "T*" | "'" | "\"" => {
                    if op.operator == "\"" {
                        gs.word_space = float(0).unwrap_or(gs.word_space);
                        gs.char_space = float(1).unwrap_or(gs.char_space);
                    }
                    tlm = Matrix::translate(0.0, -gs.leading).then(tlm);
                    tm = tlm;
                    moved = true;
                    let shown = match op.operator.as_str() {
                        "'" => operands.first(),
                        "\"" => operands.get(2),
                        _ => None,
                    };
                    if let Some(Object::String(bytes, _)) = shown {
                        self.show(bytes, &gs, fonts, &mut tm, &mut moved);
                    }
                }
                "Tj" => {
                    if let Some(Object::String(bytes, _)) = operands.first() {
                        self.show(bytes, &gs, fonts, &mut tm, &mut moved);
                    }
                }
                "TJ" => {
                    let Some(Object::Array(items)) = operands.first() else {
                        continue;
                    };
                    for item in items {
                        match item {
                            Object::String(bytes, _) => {
                                self.show(bytes, &gs, fonts, &mut tm, &mut moved)
                            }
                            other => {
                                let Ok(n) = other.as_float() else { continue };
                                let tx = -n / 1000.0 * gs.size * gs.h_scale;
                                tm = Matrix::translate(tx, 0.0).then(tm);
                                if -n / 1000.0 > 0.15 {
                                    self.layout.gap(-n / 1000.0);
                                }
                            }
                        }
                    }
                }
                "Do" => {
                    let Some(name) = operands.first().and_then(|n| n.as_name().ok()) else {
                        continue;
                    };
                    let Some(form) = self.form(resources, name) else {
                        continue;
                    };
                    if !self.read_forms {
                        self.deferred.push((form, gs.ctm));
                    } else if depth < MAX_FORM_DEPTH {
                        self.run_form(form, fonts, resources, gs.ctm, depth + 1)?;
                    }
                    moved = true;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Shows a string: adds its text to the layout and advances the text matrix.
    fn show(
        &mut self,
        bytes: &[u8],
        gs: &GState,
        fonts: &Fonts<'a, '_>,
        tm: &mut Matrix,
        moved: &mut bool,
    ) {
        let Some(font) = gs.font.as_deref().and_then(|name| fonts.get(name)) else {
            return;
        };
        let mut advance = 0.0;
        for code in font.codes(bytes) {
            let mut w = font.width(code) * gs.size + gs.char_space;
            if !font.two_byte && code == 32 {
                w += gs.word_space;
            }
            advance += w * gs.h_scale;
        }
        let start = tm.then(gs.ctm);
        *tm = Matrix::translate(advance, 0.0).then(*tm);
        let end = tm.then(gs.ctm);
        let text = font
            .encoding
            .as_ref()
            .and_then(|e| e.bytes_to_string(bytes).ok())
            .unwrap_or_default();
        if text.is_empty() {
            return;
        }
        let em = gs.size.abs() * start.vertical_scale();
        self.layout
            .put(&text, start.origin(), end.origin(), em, *moved);
        *moved = false;
    }

    /// The form XObject named `name` in the resources.
    fn form(&self, resources: &[&'a Dictionary], name: &[u8]) -> Option<&'a Stream> {
        resources.iter().find_map(|r| {
            let xobjects = r.get_deref(b"XObject", self.pdf).ok()?.as_dict().ok()?;
            let stream = self
                .pdf
                .dereference(xobjects.get(name).ok()?)
                .ok()?
                .1
                .as_stream()
                .ok()?;
            let subtype = stream.dict.get(b"Subtype").and_then(Object::as_name).ok()?;
            (subtype == b"Form").then_some(stream)
        })
    }

    fn run_form(
        &mut self,
        form: &'a Stream,
        fonts: &Fonts<'a, '_>,
        resources: &[&'a Dictionary],
        ctm: Matrix,
        depth: usize,
    ) -> Result<(), lopdf::Error> {
        let content = form.get_plain_content_with_limit(MAX_STREAM_BYTES)?;
        let matrix = form
            .dict
            .get(b"Matrix")
            .and_then(Object::as_array)
            .ok()
            .and_then(|m| Matrix::from_operands(m))
            .unwrap_or(Matrix::IDENTITY);
        let own = form
            .dict
            .get_deref(b"Resources", self.pdf)
            .and_then(Object::as_dict)
            .ok();
        let inner = Fonts {
            own: own.map(|r| resource_fonts(self.pdf, r)).unwrap_or_default(),
            outer: Some(fonts),
        };
        let mut inner_resources: Vec<&'a Dictionary> = own.into_iter().collect();
        inner_resources.extend_from_slice(resources);
        self.run(&content, &inner, &inner_resources, matrix.then(ctm), depth)
    }
}

/// The resource dictionaries of a page, nearest first.
fn page_resources(pdf: &lopdf::Document, page: ObjectId) -> Vec<&Dictionary> {
    let Ok((direct, referenced)) = pdf.get_page_resources(page) else {
        return Vec::new();
    };
    direct
        .into_iter()
        .chain(
            referenced
                .into_iter()
                .filter_map(|id| pdf.get_dictionary(id).ok()),
        )
        .collect()
}

/// The text of one page, laid out in lines.
fn page_text(
    pdf: &lopdf::Document,
    page: ObjectId,
    first_page: bool,
) -> Result<String, lopdf::Error> {
    let resources = page_resources(pdf, page);
    let mut own = HashMap::new();
    for r in resources.iter().rev() {
        own.extend(resource_fonts(pdf, r));
    }
    let fonts = Fonts { own, outer: None };
    let content = pdf.get_page_content_with_limit(page, MAX_STREAM_BYTES)?;
    let mut run = Interpreter {
        pdf,
        layout: Layout::default(),
        read_forms: false,
        deferred: Vec::new(),
    };
    run.run(&content, &fonts, &resources, Matrix::IDENTITY, 0)?;
    if !run.layout.has_text() {
        run.read_forms = true;
        for (form, ctm) in std::mem::take(&mut run.deferred) {
            run.run_form(form, &fonts, &resources, ctm, 1)?;
        }
    }
    Ok(run.layout.text(first_page))
}

// ---------------------------------------------------------------------------------------------
// Clean-up

/// Ligatures and look-alike characters, spelt out.
fn clean_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            '\u{00A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' | '\t' => out.push(' '),
            // A soft hyphen shows only at a line break, where it is a hyphenation.
            '\u{00AD}' => {}
            '\u{2010}' | '\u{2011}' => out.push('-'),
            '\u{200B}' | '\u{FEFF}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    // Runs of spaces become one, or two where there was a wide gap.
    let mut collapsed = String::with_capacity(out.len());
    let (mut run, mut wide) = (false, false);
    for c in out.trim_matches([' ', WIDE_SPACE]).chars() {
        if c == ' ' || c == WIDE_SPACE {
            run = true;
            wide |= c == WIDE_SPACE;
            continue;
        }
        if run {
            collapsed.push_str(if wide { "  " } else { " " });
            (run, wide) = (false, false);
        }
        collapsed.push(c);
    }
    if line.trim_end().ends_with('\u{00AD}') {
        collapsed.push('-');
    }
    collapsed
}

static PAGE_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:page\s+)?(?:\d{1,4}|[ivxlc]{1,7})(?:\s*(?:/|of)\s*\d{1,4})?$")
        .expect("valid regex")
});

static ARXIV_STAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arXiv:\s*\S+\s+\[[^\]]+\]\s+\d{1,2}\s+[A-Za-z]{3}\w*\.?\s+\d{4}$")
        .expect("valid regex")
});

/// How a running header or footer is recognised from page to page: page numbers vary.
fn running_key(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect::<String>()
        .to_lowercase()
}

/// The indices of the first two and last two non-empty lines.
fn edge_lines(lines: &[String]) -> Vec<usize> {
    let filled: Vec<usize> = (0..lines.len()).filter(|i| !lines[*i].is_empty()).collect();
    let mut edges: Vec<usize> = filled.iter().take(2).copied().collect();
    edges.extend(filled.iter().rev().take(2));
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// Cleans the text of pages (a form feed also separates pages): ligatures and look-alikes,
/// page numbers, running headers and footers, hyphenation across lines, and an arXiv stamp
/// before the title.
pub fn clean_pages(pages: &[String]) -> String {
    let mut pages: Vec<Vec<String>> = pages
        .iter()
        .flat_map(|p| p.split('\u{000C}'))
        .map(|p| p.lines().map(clean_line).collect())
        .collect();

    // An arXiv stamp read before the title goes to the end of its page.
    if let Some(page) = pages.first_mut() {
        if let Some(i) = page.iter().position(|l| !l.is_empty()) {
            if ARXIV_STAMP.is_match(&page[i]) {
                let stamp = page.remove(i);
                while page.get(i).is_some_and(String::is_empty) {
                    page.remove(i);
                }
                page.push(String::new());
                page.push(stamp);
            }
        }
    }

    // Running headers and footers: the same edge line on most pages after the first (page
    // one usually has its own header, and its first line is the title).
    let later = pages.len().saturating_sub(1);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for page in pages.iter().skip(1) {
        let mut keys: Vec<String> = edge_lines(page)
            .into_iter()
            .map(|i| running_key(&page[i]))
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            *seen.entry(key).or_default() += 1;
        }
    }
    let threshold = (later / 2 + 1).max(2);
    for (n, page) in pages.iter_mut().enumerate() {
        let first = page.iter().position(|l| !l.is_empty());
        for i in edge_lines(page) {
            let running = seen
                .get(&running_key(&page[i]))
                .is_some_and(|c| *c >= threshold);
            let title = n == 0 && Some(i) == first;
            if PAGE_NUMBER.is_match(&page[i]) || (running && !title) {
                page[i].clear();
            }
        }
    }

    // Pages join as lines do, unless a page ends a sentence: then as paragraphs.
    let mut lines: Vec<String> = Vec::new();
    for page in pages {
        let first = page.iter().position(|l| !l.is_empty());
        let last = page.iter().rposition(|l| !l.is_empty());
        let (Some(first), Some(last)) = (first, last) else {
            continue;
        };
        if lines
            .last()
            .is_some_and(|l| l.ends_with(['.', '!', '?', ':']))
        {
            lines.push(String::new());
        }
        lines.extend(page.into_iter().take(last + 1).skip(first));
    }
    join_hyphenated(lines).join("\n")
}

/// Joins words hyphenated across a line break: "… our meth-" and "ods in …" make "… our
/// methods" and "in …"; a word that has a hyphen already keeps this one too
/// ("state-of-the-" and "art").
fn join_hyphenated(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for line in lines {
        if let Some(previous) = out.last_mut() {
            let next_lower = line.chars().next().is_some_and(char::is_lowercase);
            let mut tail = previous.chars().rev();
            let broken = tail.next() == Some('-') && tail.next().is_some_and(char::is_alphabetic);
            if broken && next_lower {
                let word_start = previous.rfind(' ').map(|i| i + 1).unwrap_or(0);
                let compound = previous[word_start..previous.len() - 1].contains('-');
                if !compound {
                    previous.pop();
                }
                let (rest_of_word, rest) = line.split_once(' ').unwrap_or((&line, ""));
                previous.push_str(rest_of_word);
                if !rest.is_empty() {
                    out.push(rest.to_owned());
                }
                continue;
            }
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PDF of `pages`, each a content stream, with Helvetica (WinAnsiEncoding) as /F1.
    fn pdf(pages: &[&str]) -> Vec<u8> {
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            String::new(),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
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
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len() + 1
            ));
        }
        objects[1] = format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        );
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
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

    #[test]
    fn lines_words_and_paragraphs_follow_text_positioning() {
        // One text object: moves to new lines (Td, T*, '), a word gap and a wide gap inside TJ,
        // a move along the line, and a paragraph gap.
        let content = "BT /F1 10 Tf 12 TL 72 700 Td (A Study of) Tj ( Graphs) Tj \
                       0 -12 Td [(Ada)-300(Lovelace)-2000(Alan)-300(Turing)] TJ \
                       T* (Second) Tj 35 0 Td (line) Tj \
                       0 -40 Td (New paragraph.) Tj (Next line) ' ET";
        let text = extract_text(&pdf(&[content])).unwrap();
        assert_eq!(
            text,
            "A Study of Graphs\nAda Lovelace  Alan Turing\nSecond line\n\nNew paragraph.\nNext line"
        );
    }

    #[test]
    fn a_title_on_two_lines_becomes_one() {
        let content = "BT /F1 20 Tf 72 760 Td (arXiv:2301.01234v1 [cs.LG] 3 Jan 2023) Tj ET \
                       BT /F1 17 Tf 72 700 Td (Efficient Graph Networks for) Tj \
                       0 -20 Td (Link Prediction) Tj ET \
                       BT /F1 12 Tf 72 640 Td (Ada Lovelace) Tj ET \
                       BT /F1 10 Tf 72 600 Td (Abstract) Tj 0 -12 Td (We propose it.) Tj \
                       0 -12 Td (It works.) Tj 0 -12 Td (Really.) Tj ET";
        let text = extract_text(&pdf(&[content])).unwrap();
        assert_eq!(
            text,
            "Efficient Graph Networks for Link Prediction\n\nAda Lovelace\n\n\
             Abstract\nWe propose it.\nIt works.\nReally.\n\n\
             arXiv:2301.01234v1 [cs.LG] 3 Jan 2023"
        );
    }

    #[test]
    fn text_in_separate_objects_and_the_ctm() {
        let content = "q 1 0 0 1 72 700 cm BT /F1 12 Tf 0 0 Td (Title line here) Tj ET Q \
                       BT /F1 12 Tf 72 680 Td (Body text follows) Tj ET \
                       BT /F1 12 Tf 1 0 0 1 72 680 Tm (    ) Tj ET";
        let text = extract_text(&pdf(&[content])).unwrap();
        assert_eq!(text, "Title line here\nBody text follows");
    }

    #[test]
    fn scans_garbage_and_encryption_are_refused_clearly() {
        assert_eq!(
            extract_text(b"GIF89a not a pdf at all"),
            Err(IngestError::NotPdf)
        );
        // Only a drawing: no text layer.
        let drawing = pdf(&["0 0 m 100 100 l S"]);
        assert_eq!(extract_text(&drawing), Err(IngestError::NoTextLayer));
        // A header and nothing PDF after it.
        assert!(matches!(
            extract_text(b"%PDF-1.7\ngarbage without objects"),
            Err(IngestError::BadPdf(_))
        ));
        let big = vec![b' '; MAX_PDF_BYTES + 1];
        assert_eq!(extract_text(&big), Err(IngestError::PdfTooLarge));
    }

    /// `pdf` encrypted (RC4, 128 bits) with `user` as the password to open it.
    fn encrypted(pdf: &[u8], user: &str) -> Vec<u8> {
        let mut doc = lopdf::Document::load_mem(pdf).unwrap();
        let id = Object::String(b"0123456789abcdef".to_vec(), lopdf::StringFormat::Literal);
        doc.trailer.set("ID", Object::Array(vec![id.clone(), id]));
        let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
            document: &doc,
            owner_password: "owner",
            user_password: user,
            key_length: 128,
            permissions: lopdf::Permissions::default(),
        })
        .unwrap();
        doc.encrypt(&state).unwrap();
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn a_password_is_refused_but_restrictions_alone_are_not() {
        let plain = pdf(&["BT /F1 12 Tf 72 700 Td (An encrypted paper about graphs) Tj ET"]);
        assert_eq!(
            extract_text(&encrypted(&plain, "secret")),
            Err(IngestError::Encrypted)
        );
        assert_eq!(
            extract_text(&encrypted(&plain, "")).as_deref(),
            Ok("An encrypted paper about graphs")
        );
    }

    #[test]
    fn ligatures_hyphenation_and_page_furniture_are_cleaned() {
        let pages = [
            "A Study of Graphs\nAda Lovelace\nWe describe our meth-\nods and the state-of-the-\nart e\u{FB03}ciently.\n1",
            "Preprint. Under review.\nPage 2 of 3\nThe \u{FB01}rst re\u{00AD}\nsults. A Line-\nBreak stays.\n2",
            "Preprint. Under review.\nConclusions follow.\n3",
        ];
        let pages: Vec<String> = pages.iter().map(|p| p.to_string()).collect();
        let text = clean_pages(&pages);
        assert_eq!(
            text,
            "A Study of Graphs\nAda Lovelace\nWe describe our methods\nand the state-of-the-art\n\
             efficiently.\n\nThe first results.\nA Line-\nBreak stays.\n\nConclusions follow."
        );
    }

    #[test]
    fn a_running_title_keeps_the_first_page_title_and_an_arxiv_stamp_moves_down() {
        let pages: Vec<String> = [
            "arXiv:2301.01234v2 [cs.LG] 5 Jan 2023\nGraphNet\nAda Lovelace\nAbstract",
            "GraphNet\nBody one.",
            "GraphNet\nBody two.\u{000C}GraphNet\nBody three.",
        ]
        .iter()
        .map(|p| p.to_string())
        .collect();
        let text = clean_pages(&pages);
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            [
                "GraphNet",
                "Ada Lovelace",
                "Abstract",
                "arXiv:2301.01234v2 [cs.LG] 5 Jan 2023",
                "Body one.",
                "Body two.",
                "Body three."
            ]
        );
    }
}
