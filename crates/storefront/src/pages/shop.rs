//! Browsing: the home page, the listing with search, filter, sort and pages, and the
//! product page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use contracts::catalog::{Category, Product};
use serde::Deserialize;

use super::{Chrome, Section, errors, render};
use crate::Site;
use crate::session::Shopper;

/// A product as a card in a grid.
pub struct Card {
    /// Its slug, for its link.
    pub slug: String,
    /// Its name.
    pub name: String,
    /// Its price tag.
    pub price: String,
    /// Its picture's URL.
    pub picture: String,
    /// The picture's alternative text.
    pub alt: String,
}

impl From<&Product> for Card {
    fn from(product: &Product) -> Self {
        Self {
            slug: product.slug.clone(),
            name: product.name.clone(),
            price: product.price.price_tag(),
            picture: crate::assets::picture(&product.slug),
            alt: picture_alt(product),
        }
    }
}

/// What a product's picture shows, for people who cannot see it.
pub fn picture_alt(product: &Product) -> String {
    match product.attributes.get("colour") {
        Some(colour) => format!("{}, {colour}", product.name),
        None => product.name.clone(),
    }
}

/// The home page.
#[derive(Template)]
#[template(path = "home.html")]
pub struct Home {
    chrome: Chrome,
    categories: Vec<Category>,
    featured: Vec<Card>,
}

/// `GET /`: the categories and a first look at the catalog.
pub async fn home(State(site): State<Arc<Site>>, shopper: Shopper) -> Response {
    let (categories, products) = tokio::join!(
        site.api.categories(),
        site.api.products(&[("limit", "8"), ("sort", "-price")])
    );
    match (categories, products) {
        (Ok(categories), Ok(products)) => render(&Home {
            chrome: Chrome::new(&shopper, "Everyday goods, made to last", Section::Shop),
            categories,
            featured: products.items.iter().map(Card::from).collect(),
        }),
        (Err(error), _) | (_, Err(error)) => errors::failure(&shopper, &error, "/"),
    }
}

/// What the listing was asked for.
#[derive(Debug, Default, Deserialize)]
pub struct ListingQuery {
    /// Words to search for.
    #[serde(default)]
    pub q: String,
    /// A category's slug.
    #[serde(default)]
    pub category: String,
    /// `price`, `-price`, `name`, `-name`, or empty for the catalog's order.
    #[serde(default)]
    pub sort: String,
    /// Where the page starts.
    #[serde(default)]
    pub cursor: String,
}

/// A sort the listing offers.
pub struct SortOption {
    /// The catalog's value.
    pub value: &'static str,
    /// What shoppers read.
    pub label: &'static str,
}

const SORTS: [SortOption; 5] = [
    SortOption {
        value: "",
        label: "Newest",
    },
    SortOption {
        value: "price",
        label: "Price: low to high",
    },
    SortOption {
        value: "-price",
        label: "Price: high to low",
    },
    SortOption {
        value: "name",
        label: "Name: A to Z",
    },
    SortOption {
        value: "-name",
        label: "Name: Z to A",
    },
];

/// The listing page.
#[derive(Template)]
#[template(path = "products.html")]
pub struct Listing {
    chrome: Chrome,
    heading: String,
    query: ListingQuery,
    categories: Vec<Category>,
    sorts: &'static [SortOption],
    products: Vec<Card>,
    next_page: Option<String>,
    first_page: Option<String>,
}

/// Products on one page of the listing.
const PAGE_SIZE: &str = "12";

/// `GET /products`: search, filter by category, sort, page.
pub async fn listing(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Query(query): Query<ListingQuery>,
) -> Response {
    let params = [
        ("q", query.q.as_str()),
        ("category", query.category.as_str()),
        ("sort", query.sort.as_str()),
        ("cursor", query.cursor.as_str()),
        ("limit", PAGE_SIZE),
    ];
    let (categories, page) = tokio::join!(site.api.categories(), site.api.products(&params));
    let (categories, page) = match (categories, page) {
        (Ok(categories), Ok(page)) => (categories, page),
        (Err(error), _) | (_, Err(error)) => {
            return errors::failure(&shopper, &error, "/products");
        }
    };
    let same = |cursor: &str| {
        format!(
            "/products{}",
            crate::api::encode_query(&[
                ("q", &query.q),
                ("category", &query.category),
                ("sort", &query.sort),
                ("cursor", cursor),
            ])
        )
    };
    let next_page = page.next_cursor.as_deref().map(same);
    let first_page = (!query.cursor.is_empty()).then(|| same(""));
    let category_name = categories
        .iter()
        .find(|category| category.slug == query.category)
        .map(|category| category.name.clone());
    let heading = match (query.q.trim(), category_name) {
        ("", None) => "All products".to_owned(),
        ("", Some(name)) => name,
        (q, None) => format!("Results for “{q}”"),
        (q, Some(name)) => format!("Results for “{q}” in {name}"),
    };
    let mut chrome = Chrome::new(&shopper, heading.clone(), Section::Shop);
    chrome.search = query.q.clone();
    render(&Listing {
        chrome,
        heading,
        categories,
        sorts: &SORTS,
        products: page.items.iter().map(Card::from).collect(),
        next_page,
        first_page,
        query,
    })
}

/// The product page.
#[derive(Template)]
#[template(path = "product.html")]
pub struct ProductPage {
    chrome: Chrome,
    product: Product,
    card: Card,
    category: Option<Category>,
    /// Units that can be bought now, if inventory answered.
    available: Option<i64>,
}

impl ProductPage {
    /// The most a shopper may put in the cart at once.
    fn max_quantity(&self) -> i64 {
        self.available.unwrap_or(99).clamp(1, 99)
    }

    /// The stock line: text and style.
    fn stock(&self) -> (&'static str, String) {
        stock_line(self.available)
    }

    /// Whether the add-to-cart form is shown: not when it is known to be sold out.
    fn can_buy(&self) -> bool {
        self.available.is_none_or(|count| count > 0)
    }

    /// The attributes with readable names (`dishwasher_safe` → `Dishwasher safe`).
    fn attributes(&self) -> Vec<(String, &str)> {
        self.product
            .attributes
            .iter()
            .map(|(key, value)| {
                let mut label = key.replace('_', " ");
                if let Some(first) = label.get(..1) {
                    label = first.to_uppercase() + label.get(1..).unwrap_or_default();
                }
                (label, value.as_str())
            })
            .collect()
    }
}

/// How much is left, in words, and the style that goes with it.
pub fn stock_line(available: Option<i64>) -> (&'static str, String) {
    match available {
        None => ("", "Availability unknown just now".to_owned()),
        Some(count) if count <= 0 => ("stock--out", "Out of stock".to_owned()),
        Some(count) if count <= 5 => ("stock--low", format!("Only {count} left")),
        Some(_) => ("", "In stock".to_owned()),
    }
}

/// `GET /products/{slug}`.
pub async fn product(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(slug): Path<String>,
) -> Response {
    let product = match site.api.product(&slug).await {
        Ok(product) => product,
        Err(error) => return errors::failure(&shopper, &error, "/"),
    };
    let (available, categories) =
        tokio::join!(site.api.availability(&product.id), site.api.categories());
    let category = categories
        .ok()
        .and_then(|all| all.into_iter().find(|c| c.slug == product.category));
    render(&ProductPage {
        chrome: Chrome::new(&shopper, product.name.clone(), Section::Shop),
        card: Card::from(&product),
        available: available.ok(),
        category,
        product,
    })
}
