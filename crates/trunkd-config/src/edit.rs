//! Changes to the operator's file, made the way a careful person would make
//! them by hand: only the keys that change are touched, and comments, key
//! order, blank lines and formatting of everything else stay as they were
//! (`toml_edit`). The admin API (SPEC §11) writes through this module; it
//! validates the result as a reload does before anything is swapped in.
//!
//! Resources may be written as `[[numbers]]` tables or as an inline array
//! `numbers = [ { … }, … ]`; both are found and edited in place.

use thiserror::Error;
/// The values and tables [`Document`] takes, for callers building entries.
pub use toml_edit;
use toml_edit::{DocumentMut, Item, TableLike, Value};

/// What a change could not do.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EditError {
    #[error("the file is not valid TOML: {0}")]
    Parse(String),
    #[error("{section} has no entry with {key} = {value:?}")]
    NotFound {
        section: &'static str,
        key: &'static str,
        value: String,
    },
    #[error("{0} is not an array of tables")]
    Shape(&'static str),
}

/// An editable copy of the file's text.
pub struct Document(DocumentMut);

/// Resource sections and the key that identifies an entry in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    VoiceConnectors,
    VoiceConnectorGroups,
    Numbers,
    SipMediaApplications,
    SipRules,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::VoiceConnectors => "voice_connectors",
            Section::VoiceConnectorGroups => "voice_connector_groups",
            Section::Numbers => "numbers",
            Section::SipMediaApplications => "sip_media_applications",
            Section::SipRules => "sip_rules",
        }
    }

    fn id_key(self) -> &'static str {
        match self {
            Section::Numbers => "e164_phone_number",
            _ => "id",
        }
    }
}

impl Document {
    pub fn parse(text: &str) -> Result<Self, EditError> {
        text.parse::<DocumentMut>()
            .map(Document)
            .map_err(|e| EditError::Parse(e.to_string()))
    }

    /// The text to write.
    pub fn render(&self) -> String {
        self.0.to_string()
    }

    /// Sets `key` of the entry of `section` whose id is `id` to a string,
    /// or removes it (`None`).
    pub fn set_str(
        &mut self,
        section: Section,
        id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), EditError> {
        self.with_entry(section, id, |t| match value {
            Some(v) => put(t, key, Value::from(v)),
            None => {
                t.remove(key);
            }
        })
    }

    /// Sets `key` of the sub-table `table` (such as `logging` in
    /// `[voice_connectors.logging]`) of the entry `id`, creating the
    /// sub-table when the entry has none.
    pub fn set_nested_bool(
        &mut self,
        section: Section,
        id: &str,
        table: &str,
        key: &str,
        value: bool,
    ) -> Result<(), EditError> {
        self.with_entry(section, id, |t| {
            let sub = t
                .entry(table)
                .or_insert_with(|| Item::Table(toml_edit::Table::new()));
            if let Some(sub) = sub.as_table_like_mut() {
                put(sub, key, Value::from(value));
            }
        })
    }

    /// Sets (`Some`) or removes (`None`) the value at `path` inside the
    /// entry `id` of `section`: `["name"]` is a key of the entry,
    /// `["termination", "cps_limit"]` a key of its `[voice_connectors.termination]`
    /// sub-table, created when missing. A value that replaces another keeps
    /// its place and trailing comment.
    pub fn set_path(
        &mut self,
        section: Section,
        id: &str,
        path: &[&str],
        value: Option<Value>,
    ) -> Result<(), EditError> {
        let Some((last, parents)) = path.split_last() else {
            return Ok(());
        };
        self.with_entry(section, id, |t| {
            let mut table: &mut dyn TableLike = t;
            for p in parents {
                if value.is_none() && table.get(p).is_none() {
                    return;
                }
                let item = table
                    .entry(p)
                    .or_insert_with(|| Item::Table(toml_edit::Table::new()));
                let Some(next) = item.as_table_like_mut() else {
                    return;
                };
                table = next;
            }
            match value {
                Some(v) => put(table, last, v),
                None => {
                    table.remove(last);
                }
            }
        })
    }

    /// Adds an entry at the end of `section`, written in the section's own
    /// style: a `[[section]]` table, or an inline table when the file lists
    /// the section as an inline array.
    pub fn append(&mut self, section: Section, entry: toml_edit::Table) -> Result<(), EditError> {
        let name = section.name();
        match self.0.get_mut(name) {
            None => {
                let mut tables = toml_edit::ArrayOfTables::new();
                tables.push(entry);
                self.0.insert(name, Item::ArrayOfTables(tables));
                Ok(())
            }
            Some(item) => {
                if let Some(tables) = item.as_array_of_tables_mut() {
                    tables.push(entry);
                    return Ok(());
                }
                if let Some(array) = item.as_array_mut() {
                    array.push(entry.into_inline_table());
                    return Ok(());
                }
                Err(EditError::Shape(name))
            }
        }
    }

    /// Removes the entry of `section` whose id is `id`.
    pub fn remove(&mut self, section: Section, id: &str) -> Result<(), EditError> {
        let name = section.name();
        let key = section.id_key();
        let not_found = || EditError::NotFound {
            section: name,
            key,
            value: id.to_owned(),
        };
        let item = self.0.get_mut(name).ok_or_else(not_found)?;
        let matches = |t: &dyn TableLike| t.get(key).and_then(|v| v.as_str()) == Some(id);
        if let Some(tables) = item.as_array_of_tables_mut() {
            let i = tables
                .iter()
                .position(|t| matches(t))
                .ok_or_else(not_found)?;
            tables.remove(i);
            return Ok(());
        }
        if let Some(array) = item.as_array_mut() {
            let i = array
                .iter()
                .position(|v| v.as_inline_table().is_some_and(|t| matches(t)))
                .ok_or_else(not_found)?;
            // The text before an element (after the previous comma) holds
            // the previous line's trailing comment: it moves to whatever
            // follows, so that comment stays.
            let prefix = array
                .get(i)
                .and_then(|v| v.decor().prefix())
                .and_then(|p| p.as_str())
                .map(str::to_owned);
            array.remove(i);
            if let Some(p) = prefix.filter(|p| p.contains('#')) {
                if let Some(next) = array.get_mut(i) {
                    next.decor_mut().set_prefix(p);
                } else {
                    array.set_trailing(p.trim_end_matches([' ', '\t']));
                }
            }
            return Ok(());
        }
        Err(EditError::Shape(name))
    }

    /// Runs `f` on the entry of `section` whose id is `id`.
    fn with_entry(
        &mut self,
        section: Section,
        id: &str,
        f: impl FnOnce(&mut dyn TableLike),
    ) -> Result<(), EditError> {
        let name = section.name();
        let key = section.id_key();
        let not_found = || EditError::NotFound {
            section: name,
            key,
            value: id.to_owned(),
        };
        let item = self.0.get_mut(name).ok_or_else(not_found)?;
        if let Some(tables) = item.as_array_of_tables_mut() {
            let t = tables
                .iter_mut()
                .find(|t| t.get(key).and_then(|v| v.as_str()) == Some(id))
                .ok_or_else(not_found)?;
            f(t);
            return Ok(());
        }
        if let Some(array) = item.as_array_mut() {
            let t = array
                .iter_mut()
                .filter_map(|v| v.as_inline_table_mut())
                .find(|t| t.get(key).and_then(|v| v.as_str()) == Some(id))
                .ok_or_else(not_found)?;
            f(t);
            return Ok(());
        }
        Err(EditError::Shape(name))
    }

    /// The items of the array at `path` inside entry `id` (an inline
    /// array, or an array of tables turned inline); empty when absent.
    pub fn get_array(&self, section: Section, id: &str, path: &[&str]) -> Vec<Value> {
        let k = section.id_key();
        let Some(item) = self.0.get(section.name()) else {
            return Vec::new();
        };
        let entry: Option<&dyn TableLike> = if let Some(tables) = item.as_array_of_tables() {
            tables
                .iter()
                .find(|t| t.get(k).and_then(|v| v.as_str()) == Some(id))
                .map(|t| t as &dyn TableLike)
        } else {
            item.as_array().and_then(|a| {
                a.iter()
                    .filter_map(|v| v.as_inline_table())
                    .find(|t| t.get(k).and_then(|v| v.as_str()) == Some(id))
                    .map(|t| t as &dyn TableLike)
            })
        };
        let Some((last, parents)) = path.split_last() else {
            return Vec::new();
        };
        let mut table = match entry {
            Some(t) => t,
            None => return Vec::new(),
        };
        for p in parents {
            match table.get(p).and_then(|i| i.as_table_like()) {
                Some(t) => table = t,
                None => return Vec::new(),
            }
        }
        match table.get(last) {
            Some(i) if i.is_array() => i
                .as_array()
                .map(|a| a.iter().cloned().collect())
                .unwrap_or_default(),
            Some(i) => i
                .as_array_of_tables()
                .map(|a| {
                    a.iter()
                        .map(|t| Value::InlineTable(t.clone().into_inline_table()))
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// The ids of the entries of `section`, in file order.
    pub fn ids(&self, section: Section) -> Vec<String> {
        let key = section.id_key();
        let Some(item) = self.0.get(section.name()) else {
            return Vec::new();
        };
        if let Some(tables) = item.as_array_of_tables() {
            return tables
                .iter()
                .filter_map(|t| t.get(key).and_then(|v| v.as_str()).map(str::to_owned))
                .collect();
        }
        item.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_inline_table())
                    .filter_map(|t| t.get(key).and_then(|v| v.as_str()).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The string value of `key` in the entry `id` of `section`.
    pub fn get_str(&self, section: Section, id: &str, key: &str) -> Option<String> {
        let k = section.id_key();
        let item = self.0.get(section.name())?;
        let found = |t: &dyn TableLike| -> Option<String> {
            (t.get(k)?.as_str()? == id)
                .then(|| t.get(key).and_then(|v| v.as_str()).map(str::to_owned))
                .flatten()
        };
        if let Some(tables) = item.as_array_of_tables() {
            return tables.iter().find_map(|t| found(t));
        }
        item.as_array()?
            .iter()
            .filter_map(|v| v.as_inline_table())
            .find_map(|t| found(t))
    }
}

/// Sets `key` of `table` to `value`; a value that replaces another keeps
/// its place and its decoration (the trailing comment on its line).
fn put(table: &mut dyn TableLike, key: &str, mut value: Value) {
    match table.get_mut(key) {
        Some(item) if item.is_value() => {
            if let Some(old) = item.as_value() {
                *value.decor_mut() = old.decor().clone();
            }
            *item = Item::Value(value);
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# The PBX trunks of ACME.
sip_media_applications = [
  { id = "sma-a", name = "A" },   # first
  { id = "sma-b", name = "B" },
]

[daemon]
region = "local"   # site name

[[numbers]]
# Reception line.
e164_phone_number = "+12065550100"
voice_connector_id = "vc-east"   # main trunk
calling_name = "East Office"

[[numbers]]
e164_phone_number = "+12065550101"

[[sip_rules]]
id = "rule-1"
trigger_value = "+12065550150"
"#;

    #[test]
    fn a_change_touches_only_its_key_and_keeps_every_comment() {
        let mut d = Document::parse(FILE).unwrap();
        d.set_str(
            Section::Numbers,
            "+12065550100",
            "voice_connector_id",
            Some("vc-west"),
        )
        .unwrap();
        d.set_str(
            Section::Numbers,
            "+12065550101",
            "deleted_at",
            Some("2026-12-03T10:00:00Z"),
        )
        .unwrap();
        let out = d.render();
        assert_eq!(
            out,
            FILE.replace(
                "voice_connector_id = \"vc-east\"   # main trunk",
                "voice_connector_id = \"vc-west\"   # main trunk"
            )
            .replace(
                "e164_phone_number = \"+12065550101\"\n",
                "e164_phone_number = \"+12065550101\"\ndeleted_at = \"2026-12-03T10:00:00Z\"\n"
            )
        );
    }

    #[test]
    fn removing_a_key_or_an_entry_leaves_the_rest_alone() {
        let mut d = Document::parse(FILE).unwrap();
        d.set_str(Section::Numbers, "+12065550100", "calling_name", None)
            .unwrap();
        d.remove(Section::Numbers, "+12065550101").unwrap();
        d.remove(Section::SipMediaApplications, "sma-b").unwrap();
        let out = d.render();
        assert!(!out.contains("East Office"));
        assert!(!out.contains("+12065550101"));
        assert!(out.contains("# Reception line.") && out.contains("# main trunk"));
        assert!(
            out.contains(r#"{ id = "sma-a", name = "A" },   # first"#),
            "{out}"
        );
        assert!(!out.contains("sma-b"));
        assert_eq!(d.ids(Section::Numbers), ["+12065550100"]);
        assert_eq!(d.ids(Section::SipMediaApplications), ["sma-a"]);
    }

    #[test]
    fn inline_entries_are_edited_in_place() {
        let mut d = Document::parse(FILE).unwrap();
        d.set_str(
            Section::SipMediaApplications,
            "sma-a",
            "name",
            Some("Alpha"),
        )
        .unwrap();
        assert_eq!(
            d.get_str(Section::SipMediaApplications, "sma-a", "name")
                .as_deref(),
            Some("Alpha")
        );
        assert!(d
            .render()
            .contains(r#"{ id = "sma-a", name = "Alpha" },   # first"#));
    }

    #[test]
    fn a_nested_setting_is_set_in_its_sub_table_or_a_new_one() {
        let text = "[[voice_connectors]]\nid = \"a\"\n[voice_connectors.logging]\nenable_sip_logs = false # off\n\n[[voice_connectors]]\nid = \"b\"\n\n[[voice_connectors]]\nid = \"c\"\n";
        let mut d = Document::parse(text).unwrap();
        d.set_nested_bool(
            Section::VoiceConnectors,
            "a",
            "logging",
            "enable_sip_logs",
            true,
        )
        .unwrap();
        d.set_nested_bool(
            Section::VoiceConnectors,
            "b",
            "logging",
            "enable_media_metric_logs",
            true,
        )
        .unwrap();
        assert_eq!(
            d.render(),
            "[[voice_connectors]]\nid = \"a\"\n[voice_connectors.logging]\nenable_sip_logs = true # off\n\n[[voice_connectors]]\nid = \"b\"\n\n[voice_connectors.logging]\nenable_media_metric_logs = true\n\n[[voice_connectors]]\nid = \"c\"\n",
            "the new sub-table follows its own entry, before the next one"
        );
    }

    #[test]
    fn paths_are_set_created_and_removed_and_entries_appended_in_style() {
        let mut d = Document::parse(FILE).unwrap();
        d.set_path(
            Section::SipRules,
            "rule-1",
            &["disabled"],
            Some(Value::from(true)),
        )
        .unwrap();
        d.set_path(Section::SipRules, "rule-1", &["trigger_value"], None)
            .unwrap();
        d.set_path(Section::SipRules, "rule-1", &["x", "y"], None)
            .unwrap();
        let mut e = toml_edit::Table::new();
        e.insert("id", toml_edit::value("sma-c"));
        d.append(Section::SipMediaApplications, e.clone()).unwrap();
        d.append(Section::VoiceConnectors, e).unwrap();
        let out = d.render();
        assert!(
            out.contains("[[sip_rules]]\nid = \"rule-1\"\ndisabled = true\n"),
            "{out}"
        );
        assert!(
            !out.contains("[sip_rules.x]"),
            "removing from a missing table creates none"
        );
        assert!(
            out.contains(r#"{ id = "sma-b", name = "B" },"#) && out.contains(r#"{ id = "sma-c" }"#),
            "{out}"
        );
        assert!(
            out.ends_with("[[voice_connectors]]\nid = \"sma-c\"\n"),
            "{out}"
        );
        Document::parse(&out).unwrap();
    }

    #[test]
    fn a_missing_entry_is_named() {
        let mut d = Document::parse(FILE).unwrap();
        assert_eq!(
            d.remove(Section::VoiceConnectors, "vc-x"),
            Err(EditError::NotFound {
                section: "voice_connectors",
                key: "id",
                value: "vc-x".into()
            })
        );
        assert_eq!(
            d.set_str(Section::Numbers, "+1999", "name", Some("x"))
                .unwrap_err()
                .to_string(),
            "numbers has no entry with e164_phone_number = \"+1999\""
        );
        assert!(matches!(
            Document::parse("[[a]\n"),
            Err(EditError::Parse(_))
        ));
    }
}
