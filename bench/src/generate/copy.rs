//! Rows in the text format of `COPY … FROM STDIN`, written into chunks that a loader streams to
//! Postgres while the generator goes on producing the next ones.

use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::time::write_timestamp;

/// A chunk is sent once it holds this many bytes.
const CHUNK: usize = 1 << 20;

/// Where a [`Rows`] writer puts its full chunks.
enum Out {
    /// Sent to a loader as they fill up.
    Stream(mpsc::Sender<Bytes>),
    /// Kept in memory, for a table loaded after the one being generated.
    Memory(Vec<Bytes>),
}

/// A writer of rows of one table.
pub struct Rows {
    buf: Vec<u8>,
    out: Out,
    rows: u64,
    first_field: bool,
}

/// The loader stopped listening (it failed; its error says why).
#[derive(Debug)]
pub struct Closed;

impl Rows {
    /// Rows streamed to `tx`.
    pub fn stream(tx: mpsc::Sender<Bytes>) -> Rows {
        Rows::new(Out::Stream(tx))
    }

    /// Rows kept in memory until [`Rows::into_chunks`].
    pub fn memory() -> Rows {
        Rows::new(Out::Memory(Vec::new()))
    }

    fn new(out: Out) -> Rows {
        Rows {
            buf: Vec::with_capacity(CHUNK + 64 * 1024),
            out,
            rows: 0,
            first_field: true,
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn sep(&mut self) {
        if !self.first_field {
            self.buf.push(b'\t');
        }
        self.first_field = false;
    }

    /// A text field.
    pub fn text(&mut self, s: &str) -> &mut Rows {
        self.sep();
        escape_into(&mut self.buf, s);
        self
    }

    /// A NULL field.
    pub fn null(&mut self) -> &mut Rows {
        self.sep();
        self.buf.extend_from_slice(b"\\N");
        self
    }

    /// A text field or NULL.
    pub fn opt_text(&mut self, s: Option<&str>) -> &mut Rows {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    /// A uuid field.
    pub fn uuid(&mut self, id: &Uuid) -> &mut Rows {
        self.sep();
        let mut out = [0u8; 36];
        self.buf
            .extend_from_slice(id.hyphenated().encode_lower(&mut out).as_bytes());
        self
    }

    /// A uuid already in its text form (ids used over and over are formatted once).
    pub fn uuid_text(&mut self, id: &str) -> &mut Rows {
        self.sep();
        self.buf.extend_from_slice(id.as_bytes());
        self
    }

    /// A uuid field or NULL.
    pub fn opt_uuid(&mut self, id: Option<&Uuid>) -> &mut Rows {
        match id {
            Some(id) => self.uuid(id),
            None => self.null(),
        }
    }

    /// An integer field.
    pub fn int(&mut self, v: i64) -> &mut Rows {
        self.sep();
        self.buf.extend_from_slice(v.to_string().as_bytes());
        self
    }

    /// A float field, in the shortest text that reads back as the same value.
    pub fn float(&mut self, v: f64) -> &mut Rows {
        self.sep();
        self.buf.extend_from_slice(v.to_string().as_bytes());
        self
    }

    /// A boolean field.
    pub fn boolean(&mut self, v: bool) -> &mut Rows {
        self.sep();
        self.buf.push(if v { b't' } else { b'f' });
        self
    }

    /// A timestamptz field, from microseconds since the Unix epoch (UTC).
    pub fn timestamp(&mut self, micros: i64) -> &mut Rows {
        self.sep();
        write_timestamp(&mut self.buf, micros);
        self
    }

    /// A timestamptz field or NULL.
    pub fn opt_timestamp(&mut self, micros: Option<i64>) -> &mut Rows {
        match micros {
            Some(m) => self.timestamp(m),
            None => self.null(),
        }
    }

    /// A text[] field.
    pub fn text_array<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Rows {
        let mut literal = String::from("{");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                literal.push(',');
            }
            literal.push('"');
            for c in item.as_ref().chars() {
                if c == '"' || c == '\\' {
                    literal.push('\\');
                }
                literal.push(c);
            }
            literal.push('"');
        }
        literal.push('}');
        self.text(&literal)
    }

    /// Ends the current row; sends the chunk once it is full.
    pub fn end(&mut self) -> Result<(), Closed> {
        self.buf.push(b'\n');
        self.rows += 1;
        self.first_field = true;
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Closed> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK + 64 * 1024),
        ));
        match &mut self.out {
            Out::Stream(tx) => tx.blocking_send(chunk).map_err(|_| Closed),
            Out::Memory(chunks) => {
                chunks.push(chunk);
                Ok(())
            }
        }
    }

    /// Sends `chunks` holding `rows` rows written by another writer.
    pub fn send_chunks(&mut self, chunks: Vec<Bytes>, rows: u64) -> Result<(), Closed> {
        self.flush()?;
        for chunk in chunks {
            match &mut self.out {
                Out::Stream(tx) => tx.blocking_send(chunk).map_err(|_| Closed)?,
                Out::Memory(kept) => kept.push(chunk),
            }
        }
        self.rows += rows;
        Ok(())
    }

    /// Sends what is left; the number of rows written.
    pub fn finish(mut self) -> Result<u64, Closed> {
        self.flush()?;
        Ok(self.rows)
    }

    /// The chunks of a writer made by [`Rows::memory`], and its row count.
    pub fn into_chunks(mut self) -> (Vec<Bytes>, u64) {
        self.flush().expect("a memory writer never closes");
        match self.out {
            Out::Memory(chunks) => (chunks, self.rows),
            Out::Stream(_) => (Vec::new(), self.rows),
        }
    }
}

/// Appends `s` with the characters COPY's text format treats specially escaped.
fn escape_into(buf: &mut Vec<u8>, s: &str) {
    if !s
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    for b in s.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_row(f: impl FnOnce(&mut Rows)) -> String {
        let mut rows = Rows::memory();
        f(&mut rows);
        rows.end().unwrap();
        let (chunks, n) = rows.into_chunks();
        assert_eq!(n, 1);
        String::from_utf8(chunks.concat()).unwrap()
    }

    #[test]
    fn escapes_what_copy_treats_specially() {
        let line = one_row(|r| {
            r.text("a\tb\\c\nd")
                .null()
                .int(-3)
                .float(0.25)
                .boolean(true);
        });
        assert_eq!(line, "a\\tb\\\\c\\nd\t\\N\t-3\t0.25\tt\n");
    }

    #[test]
    fn arrays_quote_their_elements() {
        let line = one_row(|r| {
            r.text_array(&["Zoë Chen", "say \"hi\""]);
        });
        assert_eq!(line, "{\"Zoë Chen\",\"say \\\\\"hi\\\\\"\"}\n");
        let line = one_row(|r| {
            r.text_array::<&str>(&[]);
        });
        assert_eq!(line, "{}\n");
    }
}
