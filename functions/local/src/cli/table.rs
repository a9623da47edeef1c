//! Plain text tables for people: a header row, columns as wide as their widest cell.

/// Renders `rows` under `header`, two spaces between columns, no trailing spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let table = render(
            &["NAME", "STATUS"],
            &[
                vec!["crm".into(), "valid".into()],
                vec!["calendar-sync".into(), "-".into()],
            ],
        );
        assert_eq!(
            table,
            "NAME           STATUS\ncrm            valid\ncalendar-sync  -\n"
        );
    }

    #[test]
    fn an_empty_listing_is_its_header() {
        assert_eq!(render(&["NAME"], &[]), "NAME\n");
    }
}
