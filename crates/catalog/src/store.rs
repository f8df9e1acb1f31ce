//! The catalog's SQL, and nothing else. Portable between SQLite and PostgreSQL.

use std::collections::BTreeMap;

use anyhow::Context as _;
use contracts::{Currency, Money};
use platform::db::Database;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row as _};

use crate::domain::{
    Category, Cursor, Product, ProductId, ProductQuery, ProductRef, Slug, SortKey, SortValue,
};

/// The catalog's tables.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

/// One page of a product listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The products, in order.
    pub items: Vec<Product>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
}

/// The columns `product_from_row` reads, as a literal so `concat!` can extend it.
macro_rules! select_product {
    () => {
        "SELECT p.id, p.slug, p.name, p.description, c.slug AS category, \
         p.price_minor, p.currency, p.image, p.attributes \
         FROM products p JOIN categories c ON c.id = p.category_id"
    };
}

const SELECT_PRODUCT: &str = select_product!();

impl Store {
    /// The store over `db`, which must be migrated.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// One page of products matching `query`.
    pub async fn list_products(&self, query: &ProductQuery) -> anyhow::Result<Page> {
        let column = match query.sort.key {
            SortKey::Name => "p.name",
            SortKey::Price => "p.price_minor",
        };
        let (direction, comparison) = if query.sort.descending {
            ("DESC", "<")
        } else {
            ("ASC", ">")
        };
        // Every fragment spliced in is one of the constants above; user input is bound.
        let sql = format!(
            "{SELECT_PRODUCT} \
             WHERE ($1 IS NULL OR c.slug = $1) \
               AND ($2 IS NULL OR p.search_text LIKE $2 ESCAPE '\\') \
               AND ($3 IS NULL OR p.search_text LIKE $3 ESCAPE '\\') \
               AND ($4 IS NULL OR p.search_text LIKE $4 ESCAPE '\\') \
               AND ($5 IS NULL OR p.search_text LIKE $5 ESCAPE '\\') \
               AND ($6 IS NULL OR p.search_text LIKE $6 ESCAPE '\\') \
               AND ($8 IS NULL OR ({column}, p.id) {comparison} ($7, $8)) \
             ORDER BY {column} {direction}, p.id {direction} \
             LIMIT $9"
        );
        let words = query
            .search
            .as_ref()
            .map_or(&[][..], |search| search.words());
        let pattern = |index: usize| words.get(index).map(|word| like_pattern(word));
        let mut statement = sqlx::query(AssertSqlSafe(sql))
            .bind(query.category.as_ref().map(|slug| slug.as_str().to_owned()))
            .bind(pattern(0))
            .bind(pattern(1))
            .bind(pattern(2))
            .bind(pattern(3))
            .bind(pattern(4));
        statement = match query.after.as_ref().map(|cursor| &cursor.value) {
            Some(SortValue::Name(name)) => statement.bind(Some(name.clone())),
            Some(SortValue::Price(price)) => statement.bind(Some(*price)),
            None => match query.sort.key {
                SortKey::Name => statement.bind(None::<String>),
                SortKey::Price => statement.bind(None::<i64>),
            },
        };
        // One extra row tells whether another page follows.
        let limit = query.limit.get();
        let rows = statement
            .bind(query.after.as_ref().map(|cursor| cursor.id.to_string()))
            .bind(i64::from(limit) + 1)
            .fetch_all(self.db.pool())
            .await
            .context("listing products")?;
        let mut items = rows
            .iter()
            .map(product_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|last| Cursor::after(last, query.sort))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// The product with this id or slug.
    pub async fn product(&self, reference: &ProductRef) -> anyhow::Result<Option<Product>> {
        let (sql, key) = match reference {
            ProductRef::Id(id) => (
                concat!(select_product!(), " WHERE p.id = $1"),
                id.to_string(),
            ),
            ProductRef::Slug(slug) => (
                concat!(select_product!(), " WHERE p.slug = $1"),
                slug.as_str().to_owned(),
            ),
        };
        let row = sqlx::query(sql)
            .bind(key)
            .fetch_optional(self.db.pool())
            .await
            .context("reading a product")?;
        row.as_ref().map(product_from_row).transpose()
    }

    /// The products with these ids; unknown ids are left out.
    pub async fn products_by_ids(&self, ids: &[ProductId]) -> anyhow::Result<Vec<Product>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|index| format!("${index}")).collect();
        // Only numbered placeholders are spliced in; the ids themselves are bound.
        let sql = format!(
            "{SELECT_PRODUCT} WHERE p.id IN ({})",
            placeholders.join(", ")
        );
        let mut statement = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            statement = statement.bind(id.to_string());
        }
        let rows = statement
            .fetch_all(self.db.pool())
            .await
            .context("reading products by id")?;
        rows.iter().map(product_from_row).collect()
    }

    /// Every category, in display order.
    pub async fn categories(&self) -> anyhow::Result<Vec<Category>> {
        let rows =
            sqlx::query("SELECT slug, name, description FROM categories ORDER BY position, slug")
                .fetch_all(self.db.pool())
                .await
                .context("listing categories")?;
        rows.iter()
            .map(|row| {
                Ok(Category {
                    slug: slug_column(row, "slug")?,
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                })
            })
            .collect()
    }

    /// Loads a named data set once: returns `false` if it was applied before (by this or
    /// another replica), leaving the tables untouched.
    pub async fn seed(
        &self,
        name: &str,
        categories: &[Category],
        products: &[Product],
    ) -> anyhow::Result<bool> {
        let now = now_millis();
        let mut tx = self.db.pool().begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO seeds (name, applied_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut category_ids = BTreeMap::new();
        for (position, category) in categories.iter().enumerate() {
            let id = uuid::Uuid::now_v7().to_string();
            sqlx::query(
                "INSERT INTO categories (id, slug, name, description, position) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.clone())
            .bind(category.slug.as_str().to_owned())
            .bind(category.name.clone())
            .bind(category.description.clone())
            .bind(i64::try_from(position)?)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("seeding category {}", category.slug.as_str()))?;
            category_ids.insert(category.slug.clone(), id);
        }
        for product in products {
            let category_id = category_ids
                .get(&product.category)
                .with_context(|| format!("product {} has no category", product.slug.as_str()))?;
            sqlx::query(
                "INSERT INTO products (id, slug, name, description, category_id, price_minor, \
                 currency, image, attributes, search_text, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
            )
            .bind(product.id.to_string())
            .bind(product.slug.as_str().to_owned())
            .bind(product.name.clone())
            .bind(product.description.clone())
            .bind(category_id.clone())
            .bind(product.price.amount_minor)
            .bind(product.price.currency.as_str().to_owned())
            .bind(product.image.clone())
            .bind(serde_json::to_string(&product.attributes)?)
            .bind(product.search_text())
            .bind(now)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("seeding product {}", product.slug.as_str()))?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// A LIKE pattern matching `word` anywhere, with LIKE's wildcards in it taken literally.
fn like_pattern(word: &str) -> String {
    let escaped = word
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn product_from_row(row: &AnyRow) -> anyhow::Result<Product> {
    let id: String = row.try_get("id")?;
    let currency: String = row.try_get("currency")?;
    let attributes: String = row.try_get("attributes")?;
    Ok(Product {
        id: ProductId::parse(&id).with_context(|| format!("stored product id {id:?}"))?,
        slug: slug_column(row, "slug")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        category: slug_column(row, "category")?,
        price: Money::new(row.try_get("price_minor")?, Currency::parse(&currency)?),
        image: row.try_get("image")?,
        attributes: serde_json::from_str(&attributes).context("stored product attributes")?,
    })
}

fn slug_column(row: &AnyRow, column: &str) -> anyhow::Result<Slug> {
    let text: String = row.try_get(column)?;
    Slug::parse(&text).map_err(|reason| anyhow::anyhow!("stored slug {text:?}: {reason}"))
}

fn now_millis() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_search_words_are_literal() {
        assert_eq!(like_pattern("100%"), "%100\\%%");
        assert_eq!(like_pattern("a_b"), "%a\\_b%");
        assert_eq!(like_pattern("c:\\"), "%c:\\\\%");
    }
}
