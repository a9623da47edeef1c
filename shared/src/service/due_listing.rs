//! The due keys of several due shards in one window, taken from each shard in turn. A worker's
//! refreshes then write every shard's index partition at the same pace: listed shard after
//! shard, its concurrent refreshes would all write one partition at a time, and a partition
//! DynamoDB throttles refuses the write of a grant the provider has just rotated.
//!
//! Kept free of I/O: [`DueListing::step`] says which page to read next, the caller reads it
//! and hands it back with [`DueListing::listed`].

use std::collections::VecDeque;

use crate::ports::{Page, PageRequest, TokenKey};

/// What the listing needs next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The next due key, from the shard whose turn it was.
    Key(TokenKey),
    /// A page of this shard is needed first: read it and hand it to [`DueListing::listed`].
    Read { shard: u32, page: PageRequest },
    /// Every shard is listed to its end.
    Done,
}

pub(super) struct DueListing {
    /// The shards not yet listed to their end, in turn order.
    shards: Vec<ShardListing>,
    /// Index into `shards` of the shard whose turn it is.
    turn: usize,
    page_size: u32,
}

struct ShardListing {
    shard: u32,
    keys: VecDeque<TokenKey>,
    /// Where the next page starts, once a page has been read.
    next: Option<String>,
    read: bool,
}

impl ShardListing {
    fn has_more_pages(&self) -> bool {
        !self.read || self.next.is_some()
    }
}

impl DueListing {
    pub(super) fn new(shards: impl IntoIterator<Item = u32>, page_size: u32) -> Self {
        Self {
            shards: shards
                .into_iter()
                .map(|shard| ShardListing {
                    shard,
                    keys: VecDeque::new(),
                    next: None,
                    read: false,
                })
                .collect(),
            turn: 0,
            page_size,
        }
    }

    pub(super) fn step(&mut self) -> Step {
        while !self.shards.is_empty() {
            let index = self.turn % self.shards.len();
            let listing = &mut self.shards[index];
            if let Some(key) = listing.keys.pop_front() {
                self.turn = index + 1;
                return Step::Key(key);
            }
            if listing.has_more_pages() {
                return Step::Read {
                    shard: listing.shard,
                    page: PageRequest {
                        limit: self.page_size,
                        cursor: listing.next.clone(),
                    },
                };
            }
            // Listed to its end: the shard after it takes its place in the turn.
            self.shards.remove(index);
            self.turn = index;
        }
        Step::Done
    }

    /// The page a [`Step::Read`] asked for. A page with no keys but a cursor (DynamoDB returns
    /// those) leaves the turn where it is, so the next step reads on.
    pub(super) fn listed(&mut self, shard: u32, page: Page<TokenKey>) {
        if let Some(listing) = self.shards.iter_mut().find(|l| l.shard == shard) {
            listing.keys.extend(page.items);
            listing.next = page.next;
            listing.read = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConnectionId, Owner};

    fn key(n: usize) -> TokenKey {
        TokenKey {
            connection_id: ConnectionId::parse(&format!("con_{n:032x}")).unwrap(),
            owner: Owner::Shared,
        }
    }

    /// Drives a listing over shards whose keys are `pages[shard]`, pages of `page_size`, and
    /// returns each key's shard in the order the listing gave them, and the pages it read.
    fn drive(shards: &[Vec<usize>], page_size: usize, empty_first_page: bool) -> (Vec<u32>, usize) {
        let mut listing = DueListing::new(0..shards.len() as u32, page_size as u32);
        let mut order = Vec::new();
        let mut reads = 0;
        loop {
            match listing.step() {
                Step::Key(key) => {
                    let shard = shards
                        .iter()
                        .position(|keys| keys.iter().any(|n| key == self::key(*n)))
                        .unwrap();
                    order.push(shard as u32);
                }
                Step::Read { shard, page } => {
                    reads += 1;
                    assert!(reads < 1000, "the listing reads without end");
                    assert_eq!(page.limit as usize, page_size);
                    let start: usize = page.cursor.as_deref().map_or(0, |c| c.parse().unwrap());
                    let keys = &shards[shard as usize];
                    if empty_first_page && page.cursor.is_none() {
                        listing.listed(
                            shard,
                            Page {
                                items: Vec::new(),
                                next: Some("0".to_owned()),
                            },
                        );
                        continue;
                    }
                    let end = (start + page_size).min(keys.len());
                    listing.listed(
                        shard,
                        Page {
                            items: keys[start..end].iter().map(|n| key(*n)).collect(),
                            next: (end < keys.len()).then(|| end.to_string()),
                        },
                    );
                }
                Step::Done => return (order, reads),
            }
        }
    }

    #[test]
    fn keys_come_from_each_shard_in_turn() {
        let shards = vec![
            (0..6).collect::<Vec<_>>(),
            (100..106).collect(),
            (200..206).collect(),
        ];
        let (order, reads) = drive(&shards, 4, false);
        assert_eq!(order, [0, 1, 2].repeat(6), "round robin across pages");
        assert_eq!(reads, 6, "two pages a shard");
    }

    #[test]
    fn a_shard_that_ends_leaves_the_turn_to_the_others() {
        let shards = vec![
            vec![1],
            Vec::new(),
            (200..204).collect(),
            (300..302).collect(),
        ];
        let (order, _) = drive(&shards, 3, false);
        assert_eq!(order, [0, 2, 3, 2, 3, 2, 2]);
    }

    #[test]
    fn an_empty_page_with_a_cursor_is_read_past() {
        let shards = vec![(0..3).collect::<Vec<_>>(), (100..103).collect()];
        let (order, reads) = drive(&shards, 2, true);
        assert_eq!(order, [0, 1].repeat(3));
        assert_eq!(reads, 6);
    }

    #[test]
    fn nothing_due_is_done_after_one_read_a_shard() {
        let (order, reads) = drive(&[Vec::new(), Vec::new(), Vec::new()], 10, false);
        assert!(order.is_empty());
        assert_eq!(reads, 3);
        let mut none = DueListing::new(std::iter::empty(), 10);
        assert_eq!(none.step(), Step::Done);
    }
}
