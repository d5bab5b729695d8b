//! DynamoDB's capacity rules, applied to a request and its answer as they
//! cross the wire: what the fault proxy bills each forwarded request
//! (`faults.rs`), so that benchmarks print the read and write units a
//! workload consumed.

/// Read and write capacity units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
}

impl std::ops::AddAssign for Units {
    fn add_assign(&mut self, other: Self) {
        self.read += other.read;
        self.write += other.write;
    }
}

/// The size DynamoDB bills for an attribute value (its JSON wire form):
/// strings and binaries by their bytes, numbers about one byte per two
/// digits plus one, 1 for booleans and nulls, lists and maps 3 plus their
/// elements (and, for maps, their names).
fn value_size(value: &serde_json::Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(0, |n| n.len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |a| {
            a.iter().map(|v| v.as_str().map_or(0, str::len)).sum()
        }),
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |a| a.iter().map(value_size).sum())
        }
        "M" => 3 + inner.as_object().map_or(0, item_size),
        _ => 0,
    }
}

/// An item's size: every attribute's name and value.
pub fn item_size(item: &serde_json::Map<String, serde_json::Value>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

/// Write units of putting `item`: 1 per KB (rounded up), plus one for the
/// `by_ord` index entry when the item carries `ord` (a KEYS_ONLY entry is
/// under 1 KB).
fn put_units(item: &serde_json::Map<String, serde_json::Value>) -> f64 {
    let units = item_size(item).div_ceil(1024).max(1) as f64;
    units + if item.contains_key("ord") { 1.0 } else { 0.0 }
}

/// Write units of one PartiQL write of a BatchExecuteStatement: the item
/// it writes (named in the statement, valued by its parameters) at 1 unit
/// per KB. A statement that failed its condition is billed the write it
/// attempted without index entries; an UPDATE that moves `ord` rewrites
/// the item's `by_ord` entry, which DynamoDB bills as two (the old entry
/// deleted, the new one put), an INSERT puts one.
fn statement_units(statement: &serde_json::Value, failed: bool) -> (String, f64) {
    let text = statement["Statement"].as_str().unwrap_or_default();
    let parameters = statement["Parameters"].as_array();
    let update = text.starts_with("UPDATE");
    // INSERT ... VALUE {'name': ?, ...}; UPDATE ... SET "name" = ? ... WHERE "pk" = ? AND "sk" = ?
    let quote = if update { '"' } else { '\'' };
    let mut names: Vec<&str> = text
        .split(quote)
        .skip(1)
        .step_by(2)
        .filter(|name| !name.is_empty())
        .collect();
    if update {
        // The table, then each SET name, REMOVE name and the WHERE's names.
        names.remove(0);
        let sets = text.matches(" SET ").count();
        let set_names: Vec<&str> = names[..sets.min(names.len())].to_vec();
        names = set_names.into_iter().chain(["pk", "sk"]).collect();
    }
    let valued = names.len().min(parameters.map_or(0, Vec::len));
    let names = &names[..valued];
    let size: usize = names
        .iter()
        .zip(parameters.into_iter().flatten())
        .map(|(name, value)| name.len() + value_size(value))
        .sum();
    let base = size.div_ceil(1024).max(1) as f64;
    let pk = names
        .iter()
        .zip(parameters.into_iter().flatten())
        .find(|(name, _)| **name == "pk")
        .map_or_else(String::new, |(_, value)| string_of(value));
    let units = match (failed, names.contains(&"ord"), update) {
        (true, _, _) | (false, false, _) => base,
        (false, true, false) => base + 1.0,
        (false, true, true) => base + 2.0,
    };
    (pk, units)
}

/// The partition key a key or item names (its `pk`'s string).
fn partition(item: &serde_json::Value) -> String {
    string_of(&item["pk"])
}

/// A string attribute value's string (empty for any other value).
fn string_of(value: &serde_json::Value) -> String {
    value["S"].as_str().unwrap_or_default().to_owned()
}

/// Read units of a strongly consistent read of `bytes`: 1 per 4 KB.
fn read_units(bytes: usize) -> f64 {
    bytes.div_ceil(4096).max(1) as f64
}

/// The capacity one request consumed, from its request and response bodies,
/// by DynamoDB's rules: writes 1 unit per KB per item (2 inside a
/// transaction) plus local-index entries; strongly consistent reads 1 unit
/// per 4 KB (a query rounds its whole page once, a batch each item);
/// deletes and updates are counted as 1 KB items (their old size is not on
/// the wire), condition checks as reads. The write units come also per
/// partition key written: DynamoDB takes at most 1,000 a second on one.
pub fn capacity(operation: &str, request: &[u8], response: &[u8]) -> (Units, Vec<(String, f64)>) {
    let parse =
        |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_default();
    let (request, response) = (parse(request), parse(response));
    let writes = partition_writes(operation, &request, &response);
    let mut units = Units {
        read: 0.0,
        write: writes.iter().map(|(_, units)| units).sum(),
    };
    match operation {
        "GetItem" => {
            if let Some(item) = response["Item"].as_object() {
                units.read += read_units(item_size(item));
            } else {
                units.read += 1.0;
            }
        }
        "Query" | "Scan" => {
            let bytes: usize = response["Items"].as_array().map_or(0, |items| {
                items
                    .iter()
                    .filter_map(|i| i.as_object())
                    .map(item_size)
                    .sum()
            });
            units.read += read_units(bytes);
        }
        "BatchGetItem" => {
            // Every key asked for and answered is billed, found or not: a
            // key DynamoDB did not find costs what the smallest item does.
            let mut missing: usize = request["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
                .map(|t| t["Keys"].as_array().map_or(0, Vec::len))
                .sum();
            missing = missing.saturating_sub(
                response["UnprocessedKeys"]
                    .as_object()
                    .into_iter()
                    .flat_map(|t| t.values())
                    .map(|t| t["Keys"].as_array().map_or(0, Vec::len))
                    .sum(),
            );
            for items in response["Responses"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
            {
                for item in items
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.as_object())
                {
                    units.read += read_units(item_size(item));
                    missing = missing.saturating_sub(1);
                }
            }
            units.read += missing as f64;
        }
        "TransactWriteItems" => {
            for action in request["TransactItems"].as_array().into_iter().flatten() {
                if !action["ConditionCheck"].is_null() {
                    units.read += 2.0;
                }
            }
        }
        "TransactGetItems" => {
            for item in response["Responses"].as_array().into_iter().flatten() {
                let size = item["Item"].as_object().map_or(0, item_size);
                units.read += 2.0 * read_units(size);
            }
        }
        _ => {}
    }
    (units, writes)
}

/// The write units one request consumed, per partition key written.
fn partition_writes(
    operation: &str,
    request: &serde_json::Value,
    response: &serde_json::Value,
) -> Vec<(String, f64)> {
    let empty = serde_json::Map::new();
    let mut writes = Vec::new();
    match operation {
        "PutItem" => writes.push((
            partition(&request["Item"]),
            put_units(request["Item"].as_object().unwrap_or(&empty)),
        )),
        "UpdateItem" | "DeleteItem" => writes.push((partition(&request["Key"]), 1.0)),
        "BatchWriteItem" => {
            for requests in request["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
            {
                for write in requests.as_array().into_iter().flatten() {
                    writes.push(match write["PutRequest"]["Item"].as_object() {
                        Some(item) => (partition(&write["PutRequest"]["Item"]), put_units(item)),
                        None => (partition(&write["DeleteRequest"]["Key"]), 1.0),
                    });
                }
            }
        }
        "TransactWriteItems" => {
            for action in request["TransactItems"].as_array().into_iter().flatten() {
                if let Some(item) = action["Put"]["Item"].as_object() {
                    writes.push((partition(&action["Put"]["Item"]), 2.0 * put_units(item)));
                } else if action["ConditionCheck"].is_null() {
                    let key = ["Update", "Delete"]
                        .iter()
                        .map(|kind| &action[*kind]["Key"])
                        .find(|key| !key.is_null())
                        .unwrap_or(&serde_json::Value::Null);
                    writes.push((partition(key), 2.0));
                }
            }
        }
        "BatchExecuteStatement" => {
            let responses = response["Responses"].as_array();
            let statements = request["Statements"].as_array();
            for (n, statement) in statements.into_iter().flatten().enumerate() {
                let failed = responses
                    .and_then(|r| r.get(n))
                    .is_none_or(|r| !r["Error"].is_null());
                writes.push(statement_units(statement, failed));
            }
        }
        _ => {}
    }
    writes
}
