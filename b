3431|ipcountry|70|8005870
3432|ipcountry-log|47|3432584
3433|sqlx-sqlite-wor|42|3280272
3434|sqlx-sqlite-wor|17|1024316
3436|ipcountry-worke|431|56369077
