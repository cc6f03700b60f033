//! The file fields of a record's draft: uploads joining their field (replaced, appended or
//! prepended as PocketBase merges them) and the checks of a file field's value (a part of
//! `Draft`, see `validate.rs`).

use super::*;

impl Draft<'_> {
    /// Uploaded files join their field after the input's own values, as PocketBase merges
    /// them: under the plain key they replace the field's files (keeping only the names the
    /// input lists under the same key), under `field+` / `+field` they are appended /
    /// prepended.
    pub(super) fn apply_uploads(&mut self, input: &Record, uploads: &[UploadInfo]) {
        let mut keys: Vec<&str> = Vec::new();
        for u in uploads {
            if !keys.contains(&u.key.as_str()) {
                keys.push(&u.key);
            }
        }
        for key in keys {
            let Some((field, op)) = resolve_key(self.coll, key) else {
                continue;
            };
            if !matches!(field.kind, FieldKind::File(_)) {
                continue;
            }
            let names: Vec<String> = uploads
                .iter()
                .filter(|u| u.key == key)
                .map(|u| u.name.clone())
                .collect();
            for u in uploads.iter().filter(|u| u.key == key) {
                self.uploads.insert(u.name.clone(), u.clone());
            }
            let current = self
                .record
                .get(&field.name)
                .map(to_string_list)
                .unwrap_or_default();
            let list = match op {
                Op::Set => {
                    let mut listed = input.get(key).map(to_string_list).unwrap_or_default();
                    listed.extend(names);
                    listed
                }
                Op::Prepend => names.into_iter().chain(current).collect(),
                _ => current.into_iter().chain(names).collect(),
            };
            self.set_list(field, unique_nonempty(list));
        }
    }

    /// PocketBase's file field rules: names the record did not have are refused unless
    /// uploaded now; then the count, and each upload's name, size and type.
    pub(super) fn check_file(
        &self,
        field: &Field,
        opts: &FileOptions,
        names: &[String],
    ) -> Option<FieldError> {
        if names.is_empty() {
            return field.required.then(checks::required);
        }
        let old: Vec<String> = self
            .original
            .and_then(|o| o.get(&field.name))
            .map(to_string_list)
            .unwrap_or_default();
        let invalid: Vec<String> = names
            .iter()
            .filter(|n| !self.uploads.contains_key(*n) && !old.contains(n))
            .map(|n| n.chars().take(250).collect())
            .collect();
        if !invalid.is_empty() {
            return Some(
                FieldError::new(
                    "validation_invalid_file",
                    format!("Invalid new files: [{}].", invalid.join(" ")),
                )
                .with_params(serde_json::json!({ "invalidFiles": invalid })),
            );
        }
        let max_select = opts.max_select();
        if names.len() as i64 > max_select {
            return Some(
                FieldError::new(
                    "validation_too_many_files",
                    format!("The maximum allowed files is {max_select}"),
                )
                .with_params(serde_json::json!({ "maxSelect": max_select })),
            );
        }
        for u in names.iter().filter_map(|n| self.uploads.get(n)) {
            let len = u.name.chars().count();
            if !(1..=crate::files::name::MAX_NAME_LEN).contains(&len) {
                return Some(
                    FieldError::new(
                        "validation_length_out_of_range",
                        "The length must be between 1 and 150.",
                    )
                    .with_params(serde_json::json!({"min": 1, "max": 150})),
                );
            }
            if !crate::files::name::is_valid_stored(&u.name) {
                return Some(FieldError::new(
                    "validation_match_invalid",
                    "Must be in a valid format.",
                ));
            }
            let original: String = u.original_name.chars().take(300).collect();
            if u.size as i64 > opts.max_size() {
                return Some(
                    FieldError::new(
                        "validation_file_size_limit",
                        format!(
                            "Failed to upload {original} - the maximum allowed file size is {} bytes.",
                            opts.max_size()
                        ),
                    )
                    .with_params(serde_json::json!({"file": original, "maxSize": opts.max_size()})),
                );
            }
            if !opts.mime_types.is_empty()
                && !opts
                    .mime_types
                    .iter()
                    .any(|t| crate::files::sniff::mime_is(&u.mime, t))
            {
                return Some(FieldError::new(
                    "validation_invalid_mime_type",
                    format!(
                        "{:?} mime type must be one of: {}.",
                        u.name,
                        opts.mime_types.join(", ")
                    ),
                ));
            }
        }
        None
    }
}
