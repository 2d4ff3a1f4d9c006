14952|ipcountry|63|5671138
14953|ipcountry-log|22|997629
14954|sqlx-sqlite-wor|38|1954365
14955|sqlx-sqlite-wor|46|2045422
14957|ipcountry-worke|20|1064147
