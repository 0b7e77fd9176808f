//! Name rules shared by the hub (events' cluster names), the manager and delivery (consumer
//! and Setting names): each returns what is wrong in words that follow the field's name.

/// Cluster names: 1–253 bytes of printable text.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "is {} bytes long; at most 253 are allowed",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Whether `name` is a DNS-1123 label (consumer and cluster names).
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_one_to_253_bytes_of_printable_text() {
        assert!(check_cluster_name("edge-a.eu west/1").is_ok());
        assert!(check_cluster_name(&"c".repeat(253)).is_ok());
        assert_eq!(check_cluster_name("  ").unwrap_err(), "must not be empty");
        assert!(
            check_cluster_name(&"c".repeat(254))
                .unwrap_err()
                .contains("254 bytes")
        );
        assert!(check_cluster_name("a\nb").unwrap_err().contains("control"));
    }

    #[test]
    fn dns_labels_are_lower_case_alphanumerics_and_inner_dashes() {
        assert!(is_dns_label("to-central-2"));
        for bad in ["", "-a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
