//! `--cores` lists: "1", "0,1", "2-3", "0-1,4".

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreListError {
    #[error("core list '{0}' is not valid: use numbers and ranges like 2-3 or 0,1")]
    Syntax(String),
    #[error("core list '{list}' names core {core} twice")]
    Duplicate { list: String, core: usize },
    #[error("core {core} does not exist on this machine (available: {available})")]
    Missing { core: usize, available: String },
}

pub fn parse_core_list(text: &str) -> Result<Vec<usize>, CoreListError> {
    let syntax = || CoreListError::Syntax(text.to_string());
    let mut cores = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| syntax())?;
        let hi: usize = hi.parse().map_err(|_| syntax())?;
        if lo > hi || hi - lo >= 1024 {
            return Err(syntax());
        }
        for core in lo..=hi {
            if cores.contains(&core) {
                return Err(CoreListError::Duplicate {
                    list: text.to_string(),
                    core,
                });
            }
            cores.push(core);
        }
    }
    Ok(cores)
}

/// Checks every core is one this process may run on.
pub fn check_available(cores: &[usize], available: &[usize]) -> Result<(), CoreListError> {
    match cores.iter().find(|c| !available.contains(c)) {
        None => Ok(()),
        Some(&core) => {
            let available = available.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
            Err(CoreListError::Missing { core, available })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse_core_list("1").unwrap(), vec![1]);
        assert_eq!(parse_core_list("0,1").unwrap(), vec![0, 1]);
        assert_eq!(parse_core_list("2-3").unwrap(), vec![2, 3]);
        assert_eq!(parse_core_list("0-1, 4").unwrap(), vec![0, 1, 4]);
    }

    #[test]
    fn bad_lists() {
        for bad in ["", "a", "3-2", "1,", "-1", "0-100000"] {
            assert!(matches!(parse_core_list(bad), Err(CoreListError::Syntax(_))), "{bad:?}");
        }
        assert_eq!(
            parse_core_list("1,0-1"),
            Err(CoreListError::Duplicate {
                list: "1,0-1".into(),
                core: 1
            })
        );
        assert!(matches!(
            check_available(&[0, 5], &[0, 1]),
            Err(CoreListError::Missing { core: 5, .. })
        ));
        assert!(check_available(&[1], &[0, 1]).is_ok());
    }
}
